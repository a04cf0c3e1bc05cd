// ServiceNow says the stage is not under change control: the step returns at once.
def gate = snDevOpsChange()
echo "gate state: ${gate.state}"
