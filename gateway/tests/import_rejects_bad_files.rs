//! `bulkhead import` checks the whole file before it writes. A cut-off file, a changed count,
//! a gap in the seqs or a missing header is rejected with exit code 1. The tenant stays empty,
//! so the intact file still imports afterwards. A non-empty tenant is rejected too,
//! and a running server or an unknown tenant stops the import with exit code 2.

mod common;

use std::path::Path;

use bulkhead_client::proto::export::ExportRequest;
use common::{export::*, *};

/// Writes `lines` (each without its newline) to `name` in `dir` and returns the path.
fn write_lines(dir: &Path, name: &str, lines: &[&str]) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&path, text).expect("write the test file");
    path
}

#[tokio::test]
async fn bad_files_write_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let files = tempfile::tempdir()?;
    let mut server = TestServer::start(dir.path());
    let sample = populate(&server, "acme").await;
    let copy = create_tenant(&server, "copy", &[]).await;
    let text = sample.tenant.rest.export_tenant("acme", &ExportRequest::default()).await?;
    let good = write_lines(files.path(), "good.ndjson", &text.lines().collect::<Vec<_>>());

    let (code, output) = import(dir.path(), "copy", &good);
    assert_eq!(code, 2, "the running server holds the database: {output}");
    assert!(output.contains("another bulkhead server"), "{output}");
    server.terminate_cleanly();

    let lines: Vec<&str> = text.lines().collect();
    let last = lines.len() - 1;
    let message_at = lines
        .iter()
        .position(|l| l.contains(r#""conv":"book-club","seq":2"#))
        .expect("message 2 of book-club");
    let changed_end = lines[last].replace(r#""messages":6"#, r#""messages":7"#);
    let half_line = &lines[last][..lines[last].len() / 2];

    let without_end = [&lines[..last], &[]].concat();
    let cut_mid_line = [&lines[..last], &[half_line]].concat();
    let wrong_count = [&lines[..last], &[changed_end.as_str()]].concat();
    let seq_gap = [&lines[..message_at], &lines[message_at + 1..]].concat();
    let no_header = lines[1..].to_vec();
    let after_end = [&lines[..], &[lines[1]]].concat();
    let cases: [(&str, Vec<&str>, &str); 6] = [
        ("without-end", without_end, "cut off"),
        ("cut-mid-line", cut_mid_line, "not an export line"),
        ("wrong-count", wrong_count, "the end line counts 3 users, 2 conversations, 7 messages"),
        ("seq-gap", seq_gap, "does not follow seq 1"),
        ("no-header", no_header, "the first line must be the header"),
        ("after-end", after_end, "a line follows the end line"),
    ];
    for (name, case_lines, reason) in cases {
        let path = write_lines(files.path(), &format!("{name}.ndjson"), &case_lines);
        let (code, output) = import(dir.path(), "copy", &path);
        assert_eq!(code, 1, "{name}: {output}");
        assert!(output.contains(reason), "{name}: {output}");
        assert!(output.contains("nothing was written"), "{name}: {output}");
    }

    let (code, output) = import(dir.path(), "nobody", &good);
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("tenant nobody not found"), "{output}");
    let (code, output) = import(dir.path(), "acme", &good);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("not empty"), "{output}");

    // Every rejected file left copy empty, so the intact file imports now, and only once.
    let (code, output) = import(dir.path(), "copy", &good);
    assert_eq!(code, 0, "{output}");
    let (code, output) = import(dir.path(), "copy", &good);
    assert_eq!(code, 1, "{output}");

    let server = TestServer::start(dir.path());
    let copy = copy.at(&server);
    let page = copy.rest.list_messages("copy", "book-club", None, None, None).await?;
    assert_eq!(seqs(&page.items), vec![1, 2, 3, 4]);
    let conversation = copy.rest.get_conversation("copy", "alice-bob").await?;
    assert_eq!(conversation.last_seq, 2);
    Ok(())
}
