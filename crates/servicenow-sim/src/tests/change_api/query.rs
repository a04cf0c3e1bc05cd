//! The encoded-query language: selection, order, paging, encoding, and the parser on its own.

use super::*;

#[tokio::test]
async fn the_query_language_selects_orders_and_pages_changes() {
    let sim = start(SimSettings::default()).await.unwrap();
    let plant = |title: &str, state: &str| {
        sim.chg_create(json!({ "short_description": title }), "normal", state)
            .unwrap()
            .number
    };
    let open = plant(TITLE, "New"); // CHG0040001
    let closed = plant(TITLE, "Closed"); // CHG0040002: the decoy a re-run must not reuse
    let staging = plant(
        r#"Jenkins: Deploy "app" build 42 to "Staging""#,
        "Implement",
    );
    let build_4 = plant(r#"Jenkins: Deploy "app" build 4 to "Production""#, "New");
    let other_case = plant(&TITLE.to_lowercase(), "Assess");
    let all = [&open, &closed, &staging, &build_4, &other_case];

    let exact = format!("short_description={TITLE}^active=true");
    let any = format!("short_description={TITLE}");
    let sorted = |mut v: Vec<&String>| {
        v.sort();
        v.into_iter().cloned().collect::<Vec<_>>()
    };
    // (query, expected numbers, whether the order is the query's)
    let cases: Vec<(String, Vec<String>, bool)> = vec![
        // `=` ignores case like a MySQL-backed instance: the client checks the exact title.
        (exact.clone(), sorted(vec![&open, &other_case]), false),
        (any, sorted(vec![&open, &closed, &other_case]), false),
        (
            "active=true".into(),
            sorted(vec![&open, &staging, &build_4, &other_case]),
            false,
        ),
        ("active=false".into(), vec![closed.clone()], false),
        (
            "state=-1^ORstate=3".into(),
            sorted(vec![&closed, &staging]),
            false,
        ),
        (
            "state!=-5^state!=-4".into(),
            sorted(vec![&closed, &staging]),
            false,
        ),
        (
            "short_descriptionLIKEstaging".into(),
            vec![staging.clone()],
            false,
        ),
        (
            r#"short_descriptionSTARTSWITHJenkins: Deploy "app" build 4 to"#.into(),
            vec![build_4.clone()],
            false,
        ),
        (format!("number={staging}"), vec![staging.clone()], false),
        (
            "state=-1^NQstate=3".into(),
            sorted(vec![&closed, &staging]),
            false,
        ),
        (
            "ORDERBYDESCnumber".into(),
            all.iter().rev().map(|n| n.to_string()).collect(),
            true,
        ),
        (
            "active=true^ORDERBYstate^ORDERBYDESCnumber".into(),
            vec![
                build_4.clone(),
                open.clone(),
                other_case.clone(),
                staging.clone(),
            ],
            true,
        ),
        ("short_description=nothing like it".into(), vec![], false),
    ];
    for (query, expected, ordered) in cases {
        let (status, mut found, _) = search(&sim, &[("sysparm_query", &query)]).await;
        assert_eq!(status, 200, "{query}");
        if !ordered {
            found.sort();
        }
        assert_eq!(found, expected, "{query}");
    }

    // The same through the versioned path.
    let r = reqwest::Client::new()
        .get(chg(&sim, "v1/change"))
        .query(&[("sysparm_query", exact.as_str())])
        .basic_auth("admin", Some("admin-password"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Plain name=value parameters are ANDed equalities.
    let (_, found, _) = search(&sim, &[("active", "false")]).await;
    assert_eq!(found, vec![closed.clone()]);
    let (_, mut found, _) = search(&sim, &[("short_description", TITLE), ("active", "true")]).await;
    found.sort();
    assert_eq!(found, sorted(vec![&open, &other_case]));

    // Paging: the total counts every match.
    let (status, found, total) = search(
        &sim,
        &[
            ("sysparm_query", "ORDERBYnumber"),
            ("sysparm_limit", "2"),
            ("sysparm_offset", "1"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(found, vec![closed.clone(), staging.clone()]);
    assert_eq!(total.as_deref(), Some("5"));

    for bad in [
        vec![("sysparm_query", "short_description~x")],
        vec![("sysparm_query", "ORstate=3")],
        vec![("sysparm_query", "Short_description=x")],
        vec![("sysparm_query", "stateISEMPTYx")],
        vec![("sysparm_limit", "ten")],
        vec![("sysparm_limit", "0")],
        vec![("sysparm_offset", "-1")],
        vec![("Bad Name", "x")],
    ] {
        let (status, body) = answer(call(&sim, Method::GET, "change").query(&bad)).await;
        assert_eq!(status, 400, "{bad:?}");
        assert_eq!(body["status"], json!("failure"));
    }
    sim.stop().await;
}

#[tokio::test]
async fn a_query_travels_percent_encoded_with_its_quotes() {
    let sim = start(SimSettings::default()).await.unwrap();
    let number = sim
        .chg_create(json!({ "short_description": TITLE }), "normal", "New")
        .unwrap()
        .number;
    let encoded: String = url::form_urlencoded::byte_serialize(
        format!("short_description={TITLE}^active=true").as_bytes(),
    )
    .collect();
    let url = format!("{}?sysparm_query={encoded}", chg(&sim, "change"));
    let r = reqwest::Client::new()
        .get(url)
        .basic_auth("admin", Some("admin-password"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["result"][0]["number"]["value"], json!(number));
    assert_eq!(
        body["result"][0]["short_description"]["value"],
        json!(TITLE)
    );
    sim.stop().await;
}

#[test]
fn encoded_queries_parse_escapes_or_groups_and_orders() {
    let q = EncodedQuery::parse("a=1^ORb=2^c!=3^ORDERBYDESCd^NQe=x^^y^ORDERBYf").unwrap();
    assert_eq!(q.blocks.len(), 2);
    assert_eq!(q.blocks[0].len(), 2);
    assert_eq!(q.blocks[0][0].len(), 2);
    assert_eq!(q.blocks[1][0][0].value, "x^y");
    assert_eq!(
        q.order,
        vec![("d".to_string(), true), ("f".to_string(), false)]
    );
    let values = |pairs: &'static [(&'static str, &'static str)]| {
        move |f: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == f)
                .map(|(_, v)| v.to_string())
                .unwrap_or_default()
        }
    };
    assert!(q.matches(values(&[("b", "2"), ("c", "4")])));
    assert!(!q.matches(values(&[("b", "2"), ("c", "3")])));
    assert!(q.matches(values(&[("e", "X^Y")])));
    assert!(EncodedQuery::parse("").unwrap().matches(values(&[])));
    assert!(EncodedQuery::parse("closed_atISEMPTY")
        .unwrap()
        .matches(values(&[])));
    for bad in [
        "=x",
        "ORa=1",
        "a~1",
        "ORDERBY",
        "ORDERBYDESCBad",
        "aISEMPTYx",
    ] {
        assert!(EncodedQuery::parse(bad).is_err(), "{bad}");
    }
}
