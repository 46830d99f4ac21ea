//! The check that every acked message is in its conversation's history, read page by page
//! through the REST API.

use std::collections::HashMap;

use bulkhead_client::proto::MAX_PAGE_LIMIT;
use bulkhead_client::RestClient;
use serde::Serialize;

/// Examples kept per kind of finding.
const MAX_EXAMPLES: usize = 5;

/// An acked send to look for: its sender's user id and its `client_msg_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedMessage {
    pub from: String,
    pub client_msg_id: String,
}

/// The result of [`check_history`].
#[derive(Debug, Default, Clone, Serialize)]
pub struct HistoryFindings {
    /// Messages in the history.
    pub stored: u64,
    /// Acked seqs that are not in the history.
    pub missing: u64,
    /// Acked seqs whose stored sender or `client_msg_id` differs from the send's.
    pub mismatched: u64,
    pub examples: Vec<String>,
}

impl HistoryFindings {
    pub fn is_clean(&self) -> bool {
        self.missing == 0 && self.mismatched == 0
    }
}

/// Reads the whole history of `conversation` with `GET .../messages?after=` and compares it
/// with the acked sends in `acked`, keyed by seq.
///
/// The number of pages read is bounded by `max_messages`, the most messages the
/// conversation can hold (every send of the run, acked or not), plus one.
pub async fn check_history(
    rest: &RestClient,
    tenant: &str,
    conversation: &str,
    acked: &HashMap<u64, ExpectedMessage>,
    max_messages: u64,
) -> Result<HistoryFindings, String> {
    let mut stored: HashMap<u64, ExpectedMessage> = HashMap::with_capacity(acked.len());
    let max_pages = max_messages / u64::from(MAX_PAGE_LIMIT) + 2;
    let mut after = 0;
    let mut pages = 0;

    loop {
        if pages == max_pages {
            return Err(format!(
                "history of {tenant}/{conversation} has more than the {max_messages} messages \
                 this run sent; stopped after {pages} pages"
            ));
        }
        pages += 1;
        let page = rest
            .list_messages(
                tenant,
                conversation,
                None,
                Some(after),
                Some(MAX_PAGE_LIMIT),
            )
            .await
            .map_err(|e| {
                format!(
                    "failed to read the history of {tenant}/{conversation} after seq {after}: {e}"
                )
            })?;
        for item in &page.items {
            stored.insert(
                item.seq,
                ExpectedMessage {
                    from: item.from.clone(),
                    client_msg_id: item.client_msg_id.clone(),
                },
            );
        }
        match page.items.last() {
            Some(last) if page.more => after = last.seq,
            _ => break,
        }
    }

    Ok(compare(acked, &stored))
}

fn compare(
    acked: &HashMap<u64, ExpectedMessage>,
    stored: &HashMap<u64, ExpectedMessage>,
) -> HistoryFindings {
    let mut findings = HistoryFindings {
        stored: stored.len() as u64,
        ..HistoryFindings::default()
    };
    let mut seqs: Vec<&u64> = acked.keys().collect();
    seqs.sort_unstable();
    let (mut missing_examples, mut mismatch_examples) = (0, 0);

    for seq in seqs {
        let expected = &acked[seq];
        match stored.get(seq) {
            None => {
                findings.missing += 1;
                if missing_examples < MAX_EXAMPLES {
                    missing_examples += 1;
                    findings.examples.push(format!(
                        "seq {seq} ({} from {}) was acked but is not in the history",
                        expected.client_msg_id, expected.from
                    ));
                }
            }
            Some(found) if found != expected => {
                findings.mismatched += 1;
                if mismatch_examples < MAX_EXAMPLES {
                    mismatch_examples += 1;
                    findings.examples.push(format!(
                        "seq {seq} was acked for {} from {} but the history has {} from {}",
                        expected.client_msg_id, expected.from, found.client_msg_id, found.from
                    ));
                }
            }
            Some(_) => {}
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(from: &str, id: &str) -> ExpectedMessage {
        ExpectedMessage {
            from: from.to_string(),
            client_msg_id: id.to_string(),
        }
    }

    #[test]
    fn complete_history_is_clean() {
        let acked = HashMap::from([
            (1, message("user-0", "c0-m0")),
            (2, message("user-1", "c1-m0")),
        ]);
        let mut stored = acked.clone();
        // A send whose ack was lost is stored too, which is fine.
        stored.insert(3, message("user-0", "c0-m1"));

        let findings = compare(&acked, &stored);

        assert!(findings.is_clean(), "{findings:?}");
        assert_eq!(findings.stored, 3);
    }

    #[test]
    fn missing_seq_is_found() {
        let acked = HashMap::from([
            (1, message("user-0", "c0-m0")),
            (2, message("user-1", "c1-m0")),
        ]);
        let stored = HashMap::from([(1, message("user-0", "c0-m0"))]);

        let findings = compare(&acked, &stored);

        assert_eq!(findings.missing, 1);
        assert_eq!(findings.mismatched, 0);
        assert!(findings.examples[0].contains("seq 2"), "{findings:?}");
    }

    #[test]
    fn other_message_at_seq_is_mismatch() {
        let acked = HashMap::from([(1, message("user-0", "c0-m0"))]);
        let stored = HashMap::from([(1, message("user-0", "c0-m7"))]);

        let findings = compare(&acked, &stored);

        assert_eq!(findings.mismatched, 1);
        assert_eq!(findings.missing, 0);
    }
}
