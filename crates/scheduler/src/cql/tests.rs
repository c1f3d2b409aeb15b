use super::*;
use crate::view::InstanceView;

fn inst(
    ec2: &str,
    attrs: &[(&str, &str)],
    groups: &[&str],
    running: u32,
    version: &str,
    registered: &str,
) -> InstanceView {
    InstanceView {
        id: format!("ci-{ec2}"),
        ec2_instance_id: ec2.into(),
        agent_version: Some(version.into()),
        registered_at: value::parse_date(registered)
            .map(|(s, _)| s as u64)
            .expect("test date"),
        attributes: attrs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
            .collect(),
        task_groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        running_tasks_count: running,
        ..InstanceView::default()
    }
}

/// A small fleet covering every documented example.
fn fleet() -> Vec<InstanceView> {
    vec![
        // 0
        inst(
            "i-abcd1234",
            &[
                ("ecs.instance-type", "t2.small"),
                ("ecs.availability-zone", "us-east-1a"),
                ("stack", "prod"),
            ],
            &["service:production"],
            1,
            "1.14.4",
            "2018-02-12T10:00:00Z",
        ),
        // 1
        inst(
            "i-wxyx7890",
            &[
                ("ecs.instance-type", "g2.2xlarge"),
                ("ecs.availability-zone", "us-east-1b"),
                ("stack", "dev"),
            ],
            &["database", "database"],
            2,
            "1.14.5",
            "2018-02-13",
        ),
        // 2
        inst(
            "i-0000aaaa",
            &[
                ("ecs.instance-type", "g2.8xlarge"),
                ("ecs.availability-zone", "us-east-1d"),
            ],
            &[],
            0,
            "1.105.1",
            "2020-01-01",
        ),
        // 3
        inst(
            "i-1111bbbb",
            &[
                ("ecs.instance-type", "t2.medium"),
                ("ecs.availability-zone", "us-east-1c"),
            ],
            &["service:web"],
            1,
            "1.9.0",
            "2017-12-31T23:59:59+00:00",
        ),
    ]
}

fn selected(expr: &str) -> Vec<usize> {
    let e = parse(expr).unwrap_or_else(|err| panic!("{expr}: {err}"));
    fleet()
        .iter()
        .enumerate()
        .filter(|(_, i)| e.matches(i))
        .map(|(n, _)| n)
        .collect()
}

/// Every example expression of the ECS developer guide (cluster-query-language.md,
/// task-placement-constraints.md) and of the reference notes, with the instances it selects.
#[test]
fn documented_examples_select_the_documented_instances() {
    let table: &[(&str, &[usize])] = &[
        ("attribute:ecs.instance-type == t2.small", &[0]),
        (
            "attribute:ecs.availability-zone in [us-east-1a, us-east-1b]",
            &[0, 1],
        ),
        (
            "attribute:ecs.instance-type =~ g2.* and attribute:ecs.availability-zone != us-east-1d",
            &[1],
        ),
        ("task:group == service:production", &[0]),
        ("not(task:group == database)", &[0, 2, 3]),
        ("runningTasksCount == 1", &[0, 3]),
        ("agentVersion < 1.14.5", &[0, 3]),
        ("registeredAt < 2018-02-13", &[0, 3]),
        ("ec2InstanceId in ['i-abcd1234', 'i-wxyx7890']", &[0, 1]),
        ("attribute:ecs.instance-type == g2.2xlarge", &[1]),
        ("attribute:stack == prod", &[0]),
        // "lists the instances with the custom attribute stack unless the value is prod"
        ("attribute:stack != prod", &[1]),
        (
            "attribute:ecs.instance-type in [t2.small, t2.medium]",
            &[0, 3],
        ),
        (
            "attribute:ecs.instance-type =~ t2.* and attribute:ecs.availability-zone == us-east-1a",
            &[0],
        ),
        ("attribute:ecs.instance-type =~ t2.*", &[0, 3]),
        ("task:group == databases", &[]),
        (
            "(attribute:stack == prod or attribute:stack == dev) and runningTasksCount > 1",
            &[1],
        ),
    ];
    for (expr, want) in table {
        assert_eq!(&selected(expr), want, "{expr}");
    }
}

#[test]
fn word_and_symbol_operators_agree() {
    let pairs = [
        ("attribute:stack == prod", "attribute:stack equals prod"),
        ("attribute:stack != prod", "attribute:stack not_equals prod"),
        ("runningTasksCount > 1", "runningTasksCount greater_than 1"),
        (
            "runningTasksCount >= 1",
            "runningTasksCount greater_than_equal 1",
        ),
        ("runningTasksCount < 1", "runningTasksCount less_than 1"),
        (
            "runningTasksCount <= 1",
            "runningTasksCount less_than_equal 1",
        ),
        ("attribute:stack !exists", "attribute:stack not_exists"),
        ("attribute:stack !exists", "attribute:stack not exists"),
        (
            "attribute:stack !in [prod]",
            "attribute:stack not_in [prod]",
        ),
        (
            "attribute:stack !in [prod]",
            "attribute:stack not in [prod]",
        ),
        ("ec2InstanceId =~ i-a.*", "ec2InstanceId matches i-a.*"),
        ("ec2InstanceId !~ i-a.*", "ec2InstanceId not_matches i-a.*"),
        (
            "attribute:stack exists && runningTasksCount == 1",
            "attribute:stack exists and runningTasksCount == 1",
        ),
        (
            "attribute:stack exists || runningTasksCount == 0",
            "attribute:stack exists OR runningTasksCount == 0",
        ),
        ("!(attribute:stack exists)", "not attribute:stack exists"),
        ("!attribute:stack exists", "NOT(attribute:stack exists)"),
    ];
    for (a, b) in pairs {
        assert_eq!(selected(a), selected(b), "{a} vs {b}");
        assert_eq!(parse(a).unwrap(), parse(b).unwrap(), "{a} vs {b}");
    }
}

#[test]
fn operator_semantics() {
    let table: &[(&str, &[usize])] = &[
        ("attribute:stack exists", &[0, 1]),
        ("attribute:stack !exists", &[2, 3]),
        ("attribute:stack !in [prod]", &[1]),
        ("attribute:stack !~ p.*", &[1]),
        ("not(attribute:stack == prod)", &[1, 2, 3]),
        ("task:group exists", &[0, 1, 3]),
        ("task:group !exists", &[2]),
        ("task:group != database", &[0, 2, 3]),
        ("task:group in [service:web, database]", &[1, 3]),
        ("task:group =~ service:.*", &[0, 3]),
        ("task:group !~ service:.*", &[1, 2]),
        ("agentVersion >= 1.14.5", &[1, 2]),
        ("agentVersion == 1.14.5", &[1]),
        ("agentVersion != 1.14.5", &[0, 2, 3]),
        ("agentVersion > 1.9", &[0, 1, 2]),
        ("registeredAt == 2018-02-13", &[1]),
        ("registeredAt <= 2018-02-13", &[0, 1, 3]),
        ("registeredAt > 2018-02-13", &[2]),
        ("registeredAt >= 2018-02-13T00:00:00Z", &[1, 2]),
        ("registeredAt < 2018-01-01T00:00:00", &[3]),
        ("registeredAt == 2017-12-31T23:59:59+00:00", &[3]),
        ("registeredAt != 2018-02-13", &[0, 2, 3]),
        ("runningTasksCount != 1", &[1, 2]),
        ("runningTasksCount >= 2", &[1]),
        ("agentConnected == true", &[0, 1, 2, 3]),
        ("agentConnected in [false]", &[]),
        ("agentConnected =~ t.*", &[0, 1, 2, 3]),
        ("ec2InstanceId == i-1111bbbb", &[3]),
        ("ec2InstanceId !in [i-1111bbbb, \"i-0000aaaa\"]", &[0, 1]),
        (
            "attribute:ecs.instance-type =~ (t2|g2)\\.(small|8xlarge)",
            &[0, 2],
        ),
        ("attribute:ecs.instance-type =~ '.*large'", &[1, 2]),
        (
            "attribute:ecs.availability-zone =~ us-east-*",
            &[0, 1, 2, 3],
        ),
        ("attribute:ecs.instance-type =~ *xlarge", &[1, 2]),
        ("attribute:ecs.instance-type > g2.5xlarge", &[0, 2, 3]),
        ("attribute:stack==prod", &[0]),
        ("attribute:stack==prod||attribute:stack==dev", &[0, 1]),
        ("((attribute:stack == prod))", &[0]),
        ("!!attribute:stack == prod", &[0]),
        (
            "attribute:stack == prod or attribute:stack == dev and runningTasksCount == 0",
            &[0],
        ),
        (
            "not attribute:stack == prod and attribute:stack exists",
            &[1],
        ),
    ];
    for (expr, want) in table {
        assert_eq!(&selected(expr), want, "{expr}");
    }
}

#[test]
fn numeric_attribute_comparison() {
    let mut i = InstanceView::default();
    i.attributes.push(("cores".into(), Some("16".into())));
    i.attributes.push(("flag".into(), None));
    assert!(parse("attribute:cores > 9").unwrap().matches(&i));
    assert!(parse("attribute:cores <= 16.0").unwrap().matches(&i));
    assert!(!parse("attribute:cores < 2").unwrap().matches(&i));
    assert!(parse("attribute:flag exists").unwrap().matches(&i));
    assert!(!parse("attribute:flag == x").unwrap().matches(&i));
    assert!(!parse("attribute:flag != x").unwrap().matches(&i));
    assert!(
        !parse("agentVersion < 9").unwrap().matches(&i),
        "no version"
    );
}

#[test]
fn display_round_trips() {
    for src in [
        "attribute:ecs.instance-type =~ g2.* and attribute:ecs.availability-zone != us-east-1d",
        "not(task:group == database)",
        "ec2InstanceId in ['i-abcd1234', 'i-wxyx7890']",
        "attribute:x == 'a b' || attribute:y !exists && !(runningTasksCount > 3)",
        "attribute:x == \"it's\"",
        "registeredAt < 2018-02-13",
        "(attribute:a exists || attribute:b exists) && (attribute:c exists && attribute:d exists)",
        "attribute:a exists || (attribute:b exists || attribute:c exists)",
    ] {
        let e = parse(src).unwrap();
        let printed = e.to_string();
        assert_eq!(parse(&printed).unwrap(), e, "{src} -> {printed}");
    }
}

/// Malformed expressions, with the position (0-based character offset) and message expected.
#[test]
fn malformed_expressions_name_the_position() {
    let table: &[(&str, usize, &str)] = &[
        ("", 0, "expected an expression"),
        ("   ", 3, "expected an expression"),
        ("attribute:stack", 15, "expected an operator"),
        ("attribute:stack prod", 16, "expected an operator"),
        ("attribute:stack ==", 18, "expected a value"),
        ("attribute:stack == ", 19, "expected a value"),
        ("foo == bar", 0, "unknown subject 'foo'"),
        ("== bar", 0, "expected a subject"),
        ("attribute: == x", 10, "expected an attribute name"),
        (
            "attribute:st$ck == x",
            12,
            "invalid character in attribute name",
        ),
        (
            "ec2InstanceId > i-1",
            14,
            "operator '>' is not valid for subject 'ec2InstanceId'",
        ),
        ("ec2InstanceId exists", 14, "operator 'exists' is not valid"),
        ("runningTasksCount =~ 1", 18, "operator '=~' is not valid"),
        ("agentVersion in [1.0]", 13, "operator 'in' is not valid"),
        ("runningTasksCount == many", 21, "expected a number"),
        ("agentVersion < latest", 15, "expected a version"),
        ("registeredAt < 2018-13-45", 15, "expected a date"),
        ("registeredAt < yesterday", 15, "expected a date"),
        ("agentConnected == yes", 18, "expected true or false"),
        ("attribute:a in b", 15, "expected '['"),
        ("attribute:a in [b c]", 18, "expected ',' or ']'"),
        ("attribute:a in [b,", 18, "expected a value"),
        ("attribute:a in []", 16, "expected a value"),
        ("attribute:a in [b", 17, "expected ',' or ']'"),
        ("attribute:a == 'b", 15, "unterminated quoted value"),
        (
            "(attribute:a == b",
            17,
            "expected ')' to close the '(' at position 0",
        ),
        ("attribute:a == b)", 16, "unbalanced ')'"),
        ("attribute:a == b c", 17, "expected 'and', 'or' or the end"),
        ("attribute:a == b and", 20, "expected an expression"),
        ("attribute:a == b &&", 19, "expected an expression"),
        ("attribute:a == b || or", 20, "unknown subject 'or'"),
        ("not", 3, "expected an expression"),
        ("attribute:a =~ (unclosed", 15, "invalid regular expression"),
        ("attribute:a =~ (?=x)y", 15, "invalid regular expression"),
        ("attribute:stack = prod", 16, "expected an operator"),
    ];
    for (src, pos, msg) in table {
        let err = parse(src).expect_err(src);
        assert_eq!(err.position, *pos, "{src}: {err}");
        assert!(err.message.contains(msg), "{src}: {err}");
        assert!(
            err.to_string()
                .starts_with(&format!("Invalid expression at position {pos}: ")),
            "{err}"
        );
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let deep = format!("{}attribute:a exists{}", "(".repeat(5000), ")".repeat(5000));
    assert!(parse(&deep).is_err());
    let nots = format!("{}attribute:a exists", "!".repeat(5000));
    assert!(parse(&nots).is_err());
}

#[test]
fn depends_on_tasks_is_detected() {
    assert!(!parse("attribute:a == b").unwrap().depends_on_tasks());
    assert!(
        parse("attribute:a == b or task:group == x")
            .unwrap()
            .depends_on_tasks()
    );
    assert!(
        parse("not(runningTasksCount > 1)")
            .unwrap()
            .depends_on_tasks()
    );
}

#[test]
fn expressions_longer_than_ecs_allows_are_refused_before_parsing() {
    // A chain of thousands of `and`s nests its tree thousands deep; dropping it used to overflow
    // the stack and abort the server.
    let chain = vec!["attribute:a == b"; 10_000].join(" and ");
    let err = parse(&chain).unwrap_err();
    assert_eq!(err.position, 2000);
    assert_eq!(err.message, "expression is longer than 2000 characters");
    let at_limit = format!("attribute:a == {}", "b".repeat(2000 - 15));
    assert_eq!(at_limit.chars().count(), 2000);
    assert!(parse(&at_limit).is_ok());
}
