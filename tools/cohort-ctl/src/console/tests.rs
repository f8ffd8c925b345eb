//! Table alignment and timestamps.

use super::{Console, Format, csv, table, timestamp};

#[test]
fn tables_align_columns_and_leave_the_last_unpadded() {
    let rows = vec![
        vec!["flag".to_owned(), "new-checkout".to_owned(), "3".to_owned()],
        vec!["experiment".to_owned(), "x".to_owned(), "12".to_owned()],
    ];
    let text = table(&["KIND", "KEY", "REVISION"], &rows);
    assert_eq!(
        text,
        "KIND        KEY           REVISION\n\
         flag        new-checkout  3\n\
         experiment  x             12\n"
    );
}

#[test]
fn timestamps_are_utc_rfc3339() {
    assert_eq!(timestamp(0), "-");
    assert_eq!(timestamp(1), "1970-01-01T00:00:00Z");
    assert_eq!(timestamp(951_782_400_000), "2000-02-29T00:00:00Z");
    assert_eq!(timestamp(1_772_366_400_123), "2026-03-01T12:00:00Z");
    assert_eq!(timestamp(4_102_444_799_000), "2099-12-31T23:59:59Z");
}

#[test]
fn yaml_keeps_field_order_and_reads_back() {
    use crate::definition::{Def, Kind};
    let value = serde_json::json!({
        "key": "f", "type": "string", "salt": "s", "description": "two\nlines",
        "variations": [{"key": "on", "value": "yes"}, {"key": "n", "value": "1.5"}],
        "off_variation": "on", "default": {"split": [{"variation": "on", "weight_bp": 10000}]}
    });
    let def = Def::parse(Kind::Flag, &value).unwrap();
    let text = super::yaml(&def.tagged()).unwrap();
    assert!(text.starts_with("kind: flag\nkey: f\ntype: string\nsalt: s\n"), "{text}");
    assert!(text.contains("default:\n  split:\n"), "enums are plain mappings: {text}");
    let (specs, problems) = crate::document::parse_text("get.yaml", &text, false);
    assert!(problems.is_empty(), "{problems:?}\n{text}");
    assert_eq!(specs[0].def, def, "{text}");
}

#[test]
fn csv_quotes_commas_quotes_and_line_breaks() {
    let rows = vec![
        vec!["plain".to_owned(), "a, b".to_owned(), "say \"hi\"".to_owned()],
        vec!["two\nlines".to_owned(), String::new(), "x".to_owned()],
    ];
    assert_eq!(csv(&["A", "B", "C"], &rows), "A,B,C\nplain,\"a, b\",\"say \"\"hi\"\"\"\n\"two\nlines\",,x\n");
}

fn with_console(format: Format, stdin: &str, f: impl FnOnce(&mut Console<'_>)) -> (String, String) {
    let (mut out, mut err, mut input) =
        (Vec::new(), Vec::new(), std::io::Cursor::new(stdin.as_bytes().to_vec()));
    f(&mut Console { out: &mut out, err: &mut err, input: &mut input, format, terminal: true });
    (String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
}

#[test]
fn data_is_json_or_yaml_by_format() {
    let value = serde_json::json!({"key": "x", "list": [1, "2"], "none": null});
    let (json, _) = with_console(Format::Json, "", |c| c.data(&value).unwrap());
    assert_eq!(serde_json::from_str::<serde_json::Value>(&json).unwrap(), value);
    let (yaml, _) = with_console(Format::Yaml, "", |c| c.data(&value).unwrap());
    assert_eq!(yaml, "key: x\nlist:\n  - 1\n  - \"2\"\nnone: ~\n");
}

#[test]
fn only_y_or_yes_confirms() {
    for (answer, yes) in [
        ("y\n", true),
        ("YES\n", true),
        (" y \n", true),
        ("n\n", false),
        ("\n", false),
        ("", false),
        ("yep\n", false),
    ] {
        let mut got = None;
        let (_, err) = with_console(Format::Table, answer, |c| got = Some(c.confirm("Delete?").unwrap()));
        assert_eq!(got, Some(yes), "{answer:?}");
        assert_eq!(err, "Delete? [y/N] ");
    }
}
