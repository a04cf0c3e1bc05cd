// snDevOpsUpdateChangeInfo: updates fields of a change request, through snowgate's
// PUT /api/v1/change-info/{changeRequestNumber} (ServiceNow's changeInfo PUT).
//
//   snDevOpsUpdateChangeInfo(changeRequestNumber: 'CHG0030001',
//                            changeRequestDetails: '{"short_description":"…","priority":"1"}')
//
// Returns true when ServiceNow took the update, false otherwise; never fails the stage (as in
// the plugin, which logs and returns false for every problem).

def call(Map args = [:]) {
    def api = snowgateApi
    String step = api.prefix + 'snDevOpsUpdateChangeInfo, '
    String number = api.trimToNull(args.changeRequestNumber)
    if (number == null) {
        echo(step + " UPDATE Failed, Please provide a valid 'Change Request Number' to proceed.")
        return false
    }
    def details = args.changeRequestDetails
    if (!(details instanceof Map)) {
        String text = api.trimToNull(details)
        if (text == null) {
            echo(step + " UPDATE Failed, Please provide a valid 'Change Request Details' to proceed.")
            return false
        }
        String problem = null
        try {
            details = api.parseJson(text)
        } catch (InterruptedException e) {
            throw e
        } catch (Exception e) {
            problem = e.message ?: e.getClass().name
        }
        if (problem == null && !(details instanceof Map)) {
            problem = "A JSONObject text must begin with '{'"
        }
        if (problem != null) {
            echo(step + " Couldn't Update 'Change Request' with provided details, " + problem + '. Please provide Valid inputs')
            return false
        }
    }
    Map cfg = api.settings(args)
    if (cfg.url == null) {
        echo(step + " Couldn't Update 'Change Request' with provided details, snowgate is not configured (SNOWGATE_URL). Please provide Valid inputs")
        return false
    }
    Map response = null
    try {
        response = api.withAuth(cfg) { List headers ->
            return api.request(cfg, headers, 'PUT', '/api/v1/change-info/' + api.encode(number), details, 60)
        }
    } catch (InterruptedException e) {
        throw e
    } catch (Exception e) {
        echo(step + " Couldn't Update 'Change Request' with provided details, " + (e.message ?: e.getClass().name) + '. Please provide Valid inputs')
        return false
    }
    if (response.status >= 200 && response.status < 300 && statusIsSuccess(response.json)) {
        echo(step + " Update Successful for 'Change Request Number' => " + number + ", with given 'Change Request Details'")
        return true
    }
    echo(step + " Couldn't Update 'Change Request' with provided details, " + api.describe(response) + '. Please provide Valid inputs')
    return false
}

/** A 2xx without a status, or ServiceNow's `status: "Success"` (at the top or under `result`). */
@NonCPS
boolean statusIsSuccess(json) {
    if (!(json instanceof Map)) {
        return true
    }
    def status = json.status
    if (status == null && json.result instanceof Map) {
        status = json.result.status
    }
    return status == null || status.toString().equalsIgnoreCase('success')
}
