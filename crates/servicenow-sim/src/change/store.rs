//! The change API's CRs, templates, roles and conflicts, and the rules a create and a PATCH
//! follow.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::conflicts::ConflictBook;
use super::query::EncodedQuery;
use super::record::{ChgChange, ChgError, ChgTemplate, ChgWorkNote, Cr};
use super::state_model::{allowed_transition, parse_patch_state, ChangeType, ChgApproval};
use super::{BASE_FIELDS, DATE_FIELDS, FIRST_NUMBER, REFUSED_ON_CREATE, REFUSED_ON_PATCH};
use crate::model::{now, CrState, DATE_FORMAT};
use crate::SimSettings;

/// The change API's model: CRs, templates and the account's roles. Only ever touched under
/// [`crate::Shared::with_chg`], never across an `.await`.
pub(crate) struct ChgModel {
    changes: Vec<Cr>,
    templates: Vec<ChgTemplate>,
    pub(crate) roles: Vec<String>,
    /// Planted conflicts and conflict checks (`conflicts.rs`).
    pub(super) conflicts: ConflictBook,
}

/// A creation: the new CR and the fields the request gave but the record did not take.
pub(crate) struct Created {
    pub(crate) change: Cr,
    pub(crate) ignored: Vec<String>,
}

pub(super) fn new_sys_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A field name the table could have (`u_custom`, `assigned_to`, …).
pub(super) fn is_field_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A field value as the instance stores it: text. Objects and arrays are refused (a client
/// sending `{"value": …}` objects back would otherwise store garbage).
pub(super) fn text_of(name: &str, value: &Value) -> Result<String, ChgError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        Value::Array(_) | Value::Object(_) => Err(ChgError::bad(
            "Invalid field value",
            format!("{name} must be a string, a number or a boolean"),
        )),
    }
}

/// A planned date value: `YYYY-MM-DD HH:MM:SS` (UTC) or empty.
pub(super) fn check_date(name: &str, value: &str) -> Result<(), ChgError> {
    if value.is_empty() || chrono::NaiveDateTime::parse_from_str(value, DATE_FORMAT).is_ok() {
        Ok(())
    } else {
        Err(ChgError::bad(
            "Invalid date",
            format!("{name} must be a UTC date and time as YYYY-MM-DD HH:MM:SS, got {value:?}"),
        ))
    }
}

impl ChgModel {
    pub(crate) fn new(settings: &SimSettings) -> ChgModel {
        let mut model = ChgModel {
            changes: Vec::new(),
            templates: Vec::new(),
            roles: settings.chg_roles.clone(),
            conflicts: ConflictBook::default(),
        };
        for (name, active) in &settings.chg_templates {
            model.add_template(name, *active);
        }
        model
    }

    /// Creates a CR. `given` fields in order (later ones win); refused and unknown-looking names
    /// are listed as ignored. `template` is the standard template's sys_id.
    pub(crate) fn create(
        &mut self,
        kind: ChangeType,
        template: Option<&str>,
        given: Vec<(String, Value)>,
        state: CrState,
        from_api: bool,
        user: &str,
    ) -> Result<Created, ChgError> {
        let mut fields: BTreeMap<String, String> = BASE_FIELDS
            .iter()
            .map(|f| (f.to_string(), String::new()))
            .collect();
        let template_name = match self.template_of(kind, template, from_api)? {
            Some(t) => {
                fields.insert("short_description".into(), t.short_description.clone());
                Some(t.name.clone())
            }
            None => None,
        };
        let at = now();
        let (ignored, notes) = take_create_fields(given, &mut fields, &at, user)?;
        let change = Cr {
            number: format!("CHG{:07}", FIRST_NUMBER + self.changes.len()),
            sys_id: new_sys_id(),
            kind,
            state,
            approval: if from_api {
                ChgApproval::NotRequested
            } else {
                ChgApproval::implied_by(state, ChgApproval::NotRequested)
            },
            template: template_name,
            fields,
            work_notes: notes,
            created_by_api: from_api,
            created_at: at.clone(),
            updated_at: at,
        };
        self.changes.push(change.clone());
        Ok(Created { change, ignored })
    }

    /// The standard template a create of a standard change names by sys_id (`None` for the
    /// other types); through the API (`from_api`) it must be active.
    fn template_of(
        &self,
        kind: ChangeType,
        template: Option<&str>,
        from_api: bool,
    ) -> Result<Option<&ChgTemplate>, ChgError> {
        let (ChangeType::Standard, Some(id)) = (kind, template) else {
            return Ok(None);
        };
        let t = self
            .templates
            .iter()
            .find(|t| t.sys_id == id)
            .ok_or_else(|| {
                ChgError::NotFound(format!("No standard change template with sys_id {id}"))
            })?;
        if from_api && !t.active {
            return Err(ChgError::bad(
                "Standard change template is not active",
                format!("The template {:?} ({id}) is not active", t.name),
            ));
        }
        Ok(Some(t))
    }

    pub(crate) fn by_sys_id(&self, sys_id: &str) -> Option<&Cr> {
        self.changes.iter().find(|c| c.sys_id == sys_id)
    }

    /// A CR by number, or the newest for `"latest"`.
    pub(super) fn by_number_mut(&mut self, selector: &str) -> Result<&mut Cr, ChgError> {
        let found = if selector == "latest" {
            self.changes.last_mut()
        } else {
            self.changes.iter_mut().find(|c| c.number == selector)
        };
        found.ok_or_else(|| ChgError::NotFound(format!("change request {selector} not found")))
    }

    /// One CR by number (or `"latest"`).
    pub(crate) fn change(&self, selector: &str) -> Option<ChgChange> {
        let found = if selector == "latest" {
            self.changes.last()
        } else {
            self.changes.iter().find(|c| c.number == selector)
        };
        found.map(Cr::public)
    }

    /// Every CR, oldest first.
    pub(crate) fn changes(&self) -> Vec<ChgChange> {
        self.changes.iter().map(Cr::public).collect()
    }

    /// The CRs a query selects, in its order (by sys_id when it names none, like an instance
    /// reading its primary key, so not creation order), and how many matched before paging.
    pub(crate) fn search(
        &self,
        query: &EncodedQuery,
        offset: usize,
        limit: usize,
    ) -> (usize, Vec<Cr>) {
        let mut found: Vec<&Cr> = self
            .changes
            .iter()
            .filter(|c| query.matches(|f| c.value(f)))
            .collect();
        found.sort_by(|a, b| a.sys_id.cmp(&b.sys_id));
        found.sort_by(|a, b| query.compare(|f| a.value(f), |f| b.value(f)));
        let total = found.len();
        let page = found
            .into_iter()
            .skip(offset)
            .take(limit)
            .cloned()
            .collect();
        (total, page)
    }

    /// The templates a query selects (by sys_id unless ordered).
    pub(crate) fn search_templates(
        &self,
        query: &EncodedQuery,
        offset: usize,
        limit: usize,
    ) -> (usize, Vec<ChgTemplate>) {
        let mut found: Vec<&ChgTemplate> = self
            .templates
            .iter()
            .filter(|t| query.matches(|f| t.value(f)))
            .collect();
        found.sort_by(|a, b| a.sys_id.cmp(&b.sys_id));
        found.sort_by(|a, b| query.compare(|f| a.value(f), |f| b.value(f)));
        let total = found.len();
        let page = found
            .into_iter()
            .skip(offset)
            .take(limit)
            .cloned()
            .collect();
        (total, page)
    }

    /// `PATCH /change/{sys_id}`: the state (by value or lower-case name, along the state model),
    /// `work_notes` (appended to the journal), dates (checked) and any other field.
    pub(crate) fn patch(
        &mut self,
        sys_id: &str,
        body: Map<String, Value>,
        user: &str,
    ) -> Result<(Cr, Vec<String>), ChgError> {
        let change = self
            .changes
            .iter_mut()
            .find(|c| c.sys_id == sys_id)
            .ok_or_else(|| {
                ChgError::NotFound(
                    "Record doesn't exist or ACL restricts the record retrieval".to_string(),
                )
            })?;
        let PatchBody {
            target,
            updates,
            note,
            ignored,
        } = read_patch_body(body)?;
        if let Some(to) = target {
            check_patch_transition(change, to, &updates)?;
        }
        let at = now();
        for (name, text) in updates {
            change.fields.insert(name, text);
        }
        if let Some(to) = target {
            if to != change.state {
                change.approval = match (change.kind, to) {
                    (_, CrState::New) => ChgApproval::NotRequested,
                    (_, CrState::Authorize) => ChgApproval::Requested,
                    // Standard changes are pre-approved: scheduling one approves it.
                    (ChangeType::Standard, CrState::Scheduled) => ChgApproval::Approved,
                    _ => change.approval,
                };
                change.state = to;
            }
        }
        if let Some(text) = note {
            change.work_notes.push(ChgWorkNote {
                at: at.clone(),
                by: user.to_string(),
                text,
            });
        }
        change.updated_at = at;
        Ok((change.clone(), ignored))
    }

    /// Sets state, approval and planned window by hand (admin; no state-model rules). `None`
    /// keeps a value; an empty date clears it. A state without an explicit approval implies one
    /// (Scheduled/Implement/Review/Closed: approved; Authorize: requested; New/Assess: not
    /// requested).
    pub(crate) fn admin_update(
        &mut self,
        selector: &str,
        state: Option<&str>,
        approval: Option<&str>,
        start: Option<&str>,
        end: Option<&str>,
    ) -> Result<ChgChange, ChgError> {
        let state = state
            .map(|s| {
                CrState::parse(s)
                    .ok_or_else(|| ChgError::bad("Invalid state", format!("unknown state {s:?}")))
            })
            .transpose()?;
        let approval = approval
            .map(|a| {
                ChgApproval::parse(a).ok_or_else(|| {
                    ChgError::bad(
                        "Invalid approval",
                        format!(
                            "approval must be not requested, requested, approved or rejected, got {a:?}"
                        ),
                    )
                })
            })
            .transpose()?;
        for (name, value) in [("startDate", start), ("endDate", end)] {
            if let Some(value) = value {
                check_date(name, value)?;
            }
        }
        let change = self.by_number_mut(selector)?;
        if let Some(state) = state {
            change.approval = ChgApproval::implied_by(state, change.approval);
            change.state = state;
        }
        if let Some(approval) = approval {
            change.approval = approval;
        }
        if let Some(start) = start {
            change.fields.insert("start_date".into(), start.to_string());
        }
        if let Some(end) = end {
            change.fields.insert("end_date".into(), end.to_string());
        }
        change.updated_at = now();
        Ok(change.public())
    }

    /// The demo's automatic approval: an open CR not yet implemented moves to Implement.
    pub(crate) fn auto_approve(&mut self, sys_id: &str) {
        if let Some(change) = self.changes.iter_mut().find(|c| c.sys_id == sys_id) {
            if matches!(
                change.state,
                CrState::New | CrState::Assess | CrState::Authorize | CrState::Scheduled
            ) {
                change.state = CrState::Implement;
                change.approval = ChgApproval::Approved;
                change.updated_at = now();
            }
        }
    }

    pub(crate) fn work_notes(&self, selector: &str) -> Option<Vec<ChgWorkNote>> {
        self.change(selector).map(|c| c.work_notes)
    }

    pub(crate) fn templates(&self) -> Vec<ChgTemplate> {
        self.templates.clone()
    }

    /// Adds a template (its short description is its name) and returns it.
    pub(crate) fn add_template(&mut self, name: &str, active: bool) -> ChgTemplate {
        let template = ChgTemplate {
            sys_id: new_sys_id(),
            name: name.to_string(),
            active,
            short_description: name.to_string(),
        };
        self.templates.push(template.clone());
        template
    }

    /// (De)activates every template with this name or sys_id.
    pub(crate) fn set_template_active(
        &mut self,
        name_or_sys_id: &str,
        active: bool,
    ) -> Result<Vec<ChgTemplate>, ChgError> {
        let mut changed = Vec::new();
        for t in &mut self.templates {
            if t.sys_id == name_or_sys_id || t.name == name_or_sys_id {
                t.active = active;
                changed.push(t.clone());
            }
        }
        if changed.is_empty() {
            return Err(ChgError::NotFound(format!(
                "no standard change template {name_or_sys_id}"
            )));
        }
        Ok(changed)
    }
}

/// A create's given fields into `fields` (checked), except refused or unknown-looking names,
/// which come back as ignored (each once), and `work_notes`, which come back as the journal.
fn take_create_fields(
    given: Vec<(String, Value)>,
    fields: &mut BTreeMap<String, String>,
    at: &str,
    user: &str,
) -> Result<(Vec<String>, Vec<ChgWorkNote>), ChgError> {
    let mut ignored = Vec::new();
    let mut notes = Vec::new();
    for (name, value) in given {
        if REFUSED_ON_CREATE.contains(&name.as_str())
            || name.starts_with("sys_")
            || !is_field_name(&name)
        {
            if !ignored.contains(&name) {
                ignored.push(name);
            }
            continue;
        }
        let text = text_of(&name, &value)?;
        if name == "work_notes" {
            if !text.trim().is_empty() {
                notes.push(ChgWorkNote {
                    at: at.to_string(),
                    by: user.to_string(),
                    text,
                });
            }
            continue;
        }
        if DATE_FIELDS.contains(&name.as_str()) {
            check_date(&name, &text)?;
        }
        fields.insert(name, text);
    }
    Ok((ignored, notes))
}

/// A PATCH body, read: the target state, the field updates in order, the work note, and the
/// names ignored.
struct PatchBody {
    target: Option<CrState>,
    updates: Vec<(String, String)>,
    note: Option<String>,
    ignored: Vec<String>,
}

/// Reads a PATCH body; a bad state, field value or date is a 400 (the first one found).
fn read_patch_body(body: Map<String, Value>) -> Result<PatchBody, ChgError> {
    let mut read = PatchBody {
        target: None,
        updates: Vec::new(),
        note: None,
        ignored: Vec::new(),
    };
    for (name, value) in body {
        if name == "state" {
            read.target = Some(parse_patch_state(&value).ok_or_else(|| {
                ChgError::bad(
                    "Invalid state",
                    format!(
                        "state {value} is not a change request state: use a value (-5, -4, -3, -2, -1, 0, 3, 4) or a lower-case name (new, assess, authorize, scheduled, implement, review, closed, canceled)"
                    ),
                )
            })?);
            continue;
        }
        if REFUSED_ON_PATCH.contains(&name.as_str())
            || name.starts_with("sys_")
            || !is_field_name(&name)
        {
            read.ignored.push(name);
            continue;
        }
        let text = text_of(&name, &value)?;
        if name == "work_notes" {
            read.note = Some(text).filter(|t| !t.trim().is_empty());
            continue;
        }
        if DATE_FIELDS.contains(&name.as_str()) {
            check_date(&name, &text)?;
        }
        read.updates.push((name, text));
    }
    Ok(read)
}

/// Whether a PATCH may move `change` to `to`: along the state model, Authorize → Scheduled
/// only once approved, and into Closed only with `close_code` and `close_notes` (the values
/// after the PATCH: its `updates`, else the record's).
fn check_patch_transition(
    change: &Cr,
    to: CrState,
    updates: &[(String, String)],
) -> Result<(), ChgError> {
    let from = change.state;
    if !allowed_transition(change.kind, from, to) {
        return Err(ChgError::bad(
            "Invalid state transition",
            format!(
                "A {} change request cannot move from {} to {}",
                change.kind.name(),
                from.name(),
                to.name()
            ),
        ));
    }
    if from == CrState::Authorize
        && to == CrState::Scheduled
        && change.approval != ChgApproval::Approved
    {
        return Err(ChgError::bad(
            "Invalid state transition",
            "The change request must be approved before it is scheduled",
        ));
    }
    if to == CrState::Closed && from != to {
        // The value after this PATCH: the body's, else the record's.
        let has = |field: &str| {
            let value = match updates.iter().rev().find(|(n, _)| n == field) {
                Some((_, v)) => v.clone(),
                None => change.value(field),
            };
            !value.trim().is_empty()
        };
        if !has("close_code") || !has("close_notes") {
            return Err(ChgError::bad(
                "Data Policy Exception",
                "The following fields are mandatory to close a change request: close_code, close_notes",
            ));
        }
    }
    Ok(())
}
