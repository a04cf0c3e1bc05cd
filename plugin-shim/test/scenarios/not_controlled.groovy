// ServiceNow says the stage is not under change control: by default snowgate fails the gate
// (fail closed, as the plugin does) and the step fails the stage; with snowgate's
// `servicenow.not_controlled: proceed` the step returns at once.
def gate = snDevOpsChange()
echo "gate state: ${gate.state}"
