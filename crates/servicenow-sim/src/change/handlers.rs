//! One handler per change-API endpoint: list, get, templates, create and PATCH.

use std::sync::Arc;

use actix_web::HttpResponse;
use serde_json::{json, Map, Value};

use super::query::EncodedQuery;
use super::record::{ChgError, Cr, Shape};
use super::routes::Answer;
use super::state_model::ChangeType;
use super::store::is_field_name;
use super::DEFAULT_LIMIT;
use crate::model::CrState;
use crate::Shared;

/// `sysparm_query`, plain `field=value` parameters, `sysparm_limit`, `sysparm_offset`,
/// `sysparm_fields`. Other `sysparm_*` parameters (`sysparm_display_value`, …) change nothing.
pub(super) struct ListParams {
    query: EncodedQuery,
    limit: usize,
    offset: usize,
    fields: Option<Vec<String>>,
}

pub(super) fn first<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `sysparm_fields=number,state`: only these fields (an empty value means every field).
pub(super) fn fields_param(pairs: &[(String, String)]) -> Option<Vec<String>> {
    let fields: Vec<String> = first(pairs, "sysparm_fields")?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    (!fields.is_empty()).then_some(fields)
}

pub(super) fn list_params(pairs: &[(String, String)]) -> Result<ListParams, ChgError> {
    let mut query = match first(pairs, "sysparm_query") {
        Some(text) => EncodedQuery::parse(text).map_err(|e| ChgError::bad("Invalid query", e))?,
        None => EncodedQuery::default(),
    };
    for (name, value) in pairs {
        if name.starts_with("sysparm_") {
            continue;
        }
        if !is_field_name(name) {
            return Err(ChgError::bad(
                "Invalid query parameter",
                format!("{name:?} is neither a sysparm_ parameter nor a field name"),
            ));
        }
        query.and_equals(name, value);
    }
    let number = |name: &str, default: usize, min: usize| -> Result<usize, ChgError> {
        match first(pairs, name) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= min)
                .ok_or_else(|| {
                    ChgError::bad(
                        "Invalid parameter",
                        format!("{name} must be an integer of at least {min}, got {text:?}"),
                    )
                }),
        }
    };
    Ok(ListParams {
        query,
        limit: number("sysparm_limit", DEFAULT_LIMIT, 1)?,
        offset: number("sysparm_offset", 0, 0)?,
        fields: fields_param(pairs),
    })
}

pub(super) fn list_answer(total: usize, records: Vec<Map<String, Value>>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("X-Total-Count", total.to_string()))
        .json(json!({ "result": records }))
}

pub(super) fn list(shared: &Arc<Shared>, pairs: &[(String, String)], shape: Shape) -> Answer {
    let params = list_params(pairs)?;
    let (total, found) = shared.with_chg(|c| c.search(&params.query, params.offset, params.limit));
    let records = found
        .iter()
        .map(|c| c.render(shape, params.fields.as_deref()))
        .collect();
    Ok(list_answer(total, records))
}

pub(super) fn get(
    shared: &Arc<Shared>,
    sys_id: &str,
    pairs: &[(String, String)],
    shape: Shape,
) -> Answer {
    let found = shared.with_chg(|c| c.by_sys_id(sys_id).cloned());
    let change = found.ok_or_else(|| {
        ChgError::NotFound("Record doesn't exist or ACL restricts the record retrieval".into())
    })?;
    let record = change.render(shape, fields_param(pairs).as_deref());
    Ok(HttpResponse::Ok().json(json!({ "result": record })))
}

pub(super) fn templates(shared: &Arc<Shared>, pairs: &[(String, String)], shape: Shape) -> Answer {
    let params = list_params(pairs)?;
    let (total, found) =
        shared.with_chg(|c| c.search_templates(&params.query, params.offset, params.limit));
    let records = found
        .iter()
        .map(|t| {
            let mut record = t.render(shape);
            if let Some(only) = &params.fields {
                record.retain(|name, _| only.iter().any(|o| o == name));
            }
            record
        })
        .collect();
    Ok(list_answer(total, records))
}

/// A JSON object body; `allow_empty` lets an empty body mean "no fields" (POST with the fields
/// in the query).
pub(super) fn body_object(body: &[u8], allow_empty: bool) -> Result<Map<String, Value>, ChgError> {
    if allow_empty && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ChgError::bad(
            "Invalid request body",
            "The request body must be a JSON object of field names and values",
        )),
        Err(e) => Err(ChgError::bad(
            "Invalid request body",
            format!("The request body is not valid JSON: {e}"),
        )),
    }
}

/// The record a create or PATCH answers, with `__meta.ignoredFields`.
pub(super) fn record_with_meta(
    change: &Cr,
    ignored: Vec<String>,
    shape: Shape,
    only: Option<&[String]>,
) -> Value {
    let mut record = change.render(shape, only);
    record.insert("__meta".into(), json!({ "ignoredFields": ignored }));
    Value::Object(record)
}

/// `POST /change/{normal|emergency}`, `POST /change/standard/{template}`: fields from the query
/// (everything but `sysparm_*`) and then the JSON body (which wins).
pub(super) fn create(
    shared: &Arc<Shared>,
    kind: ChangeType,
    template: Option<&str>,
    pairs: &[(String, String)],
    body: &[u8],
    shape: Shape,
) -> Answer {
    let body = body_object(body, true)?;
    let mut given: Vec<(String, Value)> = pairs
        .iter()
        .filter(|(name, _)| !name.starts_with("sysparm_"))
        .map(|(name, value)| (name.clone(), Value::String(value.clone())))
        .collect();
    given.extend(body);
    let user = shared.settings.user.clone();
    let created =
        shared.with_chg(|c| c.create(kind, template, given, CrState::New, true, &user))?;
    tracing::info!(number = %created.change.number, kind = kind.name(), "change request created");
    arm_auto_approve(shared, created.change.sys_id.clone());
    let record = record_with_meta(
        &created.change,
        created.ignored,
        shape,
        fields_param(pairs).as_deref(),
    );
    let result = if shared.settings.chg_create_as_array {
        json!([record])
    } else {
        record
    };
    Ok(HttpResponse::Ok().json(json!({ "result": result })))
}

pub(super) fn patch(
    shared: &Arc<Shared>,
    sys_id: &str,
    pairs: &[(String, String)],
    body: &[u8],
    shape: Shape,
) -> Answer {
    let body = body_object(body, false)?;
    let user = shared.settings.user.clone();
    let (change, ignored) = shared.with_chg(|c| c.patch(sys_id, body, &user))?;
    let record = record_with_meta(&change, ignored, shape, fields_param(pairs).as_deref());
    Ok(HttpResponse::Ok().json(json!({ "result": record })))
}

/// The demo's automatic approval (`SimSettings::auto_approve_after`) for change-API CRs.
pub(super) fn arm_auto_approve(shared: &Arc<Shared>, sys_id: String) {
    let Some(delay) = shared.settings.auto_approve_after else {
        return;
    };
    let task_shared = Arc::clone(shared);
    let handle = shared.runtime.spawn(async move {
        tokio::time::sleep(delay).await;
        task_shared.with_chg(|c| c.auto_approve(&sys_id));
    });
    shared.with_model(|m| {
        m.timers.retain(|t| !t.is_finished());
        m.timers.push(handle.abort_handle());
    });
}
