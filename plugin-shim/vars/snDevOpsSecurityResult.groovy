// snDevOpsSecurityResult: not provided by the snowgate shim.
//
// The official plugin's step registers security scan results (Veracode, Checkmarx, …) with
// ServiceNow DevOps. snowgate gates stages under change control and has no pass-through for
// security results, so this step fails the stage with a clear message instead of silently
// doing nothing: a pipeline that relied on it should not look as if its results reached
// ServiceNow. See plugin-shim/README.md, "Steps not provided".

def call(Map args = [:]) {
    error(snowgateApi.prefix + 'snDevOpsSecurityResult is not provided by the snowgate plugin shim: ' +
        'security results are not sent to ServiceNow through snowgate. Remove the step, or register the ' +
        'results with ServiceNow DevOps directly (see plugin-shim/README.md, "Steps not provided").')
}
