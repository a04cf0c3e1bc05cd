// Disabled steps and steps missing their input do nothing, and make no HTTP call at all.
def r = snDevOpsChange(enabled: false, changeRequestDetails: 'not even JSON')
echo "snDevOpsChange returned: ${r}"
echo "snDevOpsStep returned: ${snDevOpsStep(enabled: false)}"
echo "snDevOpsArtifact returned: ${snDevOpsArtifact(enabled: false, artifactsPayload: '{}')}"
echo "snDevOpsUpdateChangeInfo returned: ${snDevOpsUpdateChangeInfo(changeRequestDetails: '{"priority": "1"}')}"
