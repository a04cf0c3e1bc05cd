// The steps that call snowgate's ServiceNow pass-throughs, after the stage's gate was approved.
def gate = snDevOpsChange()
echo "gate state: ${gate.state}"
echo "snDevOpsStep returned: ${snDevOpsStep()}"
String number = snDevOpsGetChangeNumber(changeDetails: """{"pipeline_name": "${env.JOB_NAME}", "stage_name": "${env.STAGE_NAME}", "build_number": "${env.BUILD_NUMBER}"}""")
echo "number by changeDetails: ${number}"
echo "snDevOpsUpdateChangeInfo returned: ${snDevOpsUpdateChangeInfo(changeRequestNumber: number, changeRequestDetails: '{"work_notes": "Deployed by the shim test"}')}"
echo "snDevOpsArtifact returned: ${snDevOpsArtifact(artifactsPayload: '{"artifacts": [{"name": "shop.jar", "version": "1.${BUILD_NUMBER}", "semanticVersion": "1.${BUILD_NUMBER}.0", "repositoryName": "releases"}]}')}"
echo "snDevOpsPackage returned: ${snDevOpsPackage(name: 'shop-release', artifactsPayload: '[{"name": "shop.jar", "repositoryName": "releases", "version": "1.${BUILD_NUMBER}"}]')}"
