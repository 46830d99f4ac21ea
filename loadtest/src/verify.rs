//! Delivery checks for one conversation: every acked message reached every other member,
//! each member's stream of `seq` values rises without gaps, a seq that arrives twice carries
//! the same body both times, and no message of another tenant reached the members.
//!
//! A member's own messages are not sent back to its session, so they are missing from its
//! stream by design. A seq that is missing from a member's stream is a gap only when that
//! member did not send it.
//!
//! A session that reconnects and calls `sync` can receive a message twice: once as an event
//! and once in the `sync` response. Clients deduplicate by `(conv, seq)`, so such a repeat
//! is harmless when its body is the same. Scenarios without reconnects set
//! [`ConversationLog::redelivery_expected`] to false, and any repeat is then an order
//! violation.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

/// Sender index for a `message` event whose `from` is not a member of the conversation.
pub const UNKNOWN_SENDER: u32 = u32::MAX;

/// Examples kept per kind of finding, so that a broken run does not print thousands of lines.
const MAX_EXAMPLES: usize = 5;

/// One `message` a member received, as an event or in a `sync` response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub seq: u64,
    /// Index of the sending member, or [`UNKNOWN_SENDER`].
    pub sender: u32,
    /// [`body_digest`] of the body; `None` when the scenario does not record it.
    pub body_digest: Option<u64>,
    /// Tenant tag that the body carries; `None` when the body has none.
    pub tenant_tag: Option<u64>,
}

impl Received {
    /// Creates a received message whose body was not recorded.
    pub fn new(seq: u64, sender: u32) -> Received {
        Received {
            seq,
            sender,
            body_digest: None,
            tenant_tag: None,
        }
    }
}

/// Returns a digest of a body's JSON text, to compare two bodies of the same seq. It uses
/// the standard library's SipHash with fixed keys, so it is stable within one process.
pub fn body_digest(body_json: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    body_json.hash(&mut hasher);
    hasher.finish()
}

/// Sends and received messages of one conversation's connections. Members are numbered by
/// their index in `acked` and `delivered`.
#[derive(Debug, Default)]
pub struct ConversationLog {
    /// Seqs from the acks of each member's sends.
    pub acked: Vec<Vec<u64>>,
    /// Messages each member received, in arrival order.
    pub delivered: Vec<Vec<Received>>,
    /// Tag of the tenant that owns the conversation. A received body with another tag came
    /// from another tenant. `None` turns the check off.
    pub tenant_tag: Option<u64>,
    /// Whether a member may receive a seq again with the same body, as after a reconnect
    /// and `sync`. When false, every repeat counts as an order violation.
    pub redelivery_expected: bool,
}

/// The result of [`check_conversation`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// `(receiver, seq)` pairs where the receiver never got an acked message of another member.
    pub undelivered: u64,
    /// Messages whose seq was not above the previous one the same member received, apart
    /// from expected redeliveries.
    pub order_violations: u64,
    /// Seqs below a member's last received seq that it neither received nor sent.
    pub gaps: u64,
    /// Seqs a member received again with the same body, which `(conv, seq)` deduplicates.
    /// Counted only when redelivery is expected, and never a failure.
    pub redeliveries: u64,
    /// Seqs a member received again with a different body, which no client can deduplicate.
    pub conflicting_duplicates: u64,
    /// Messages whose body carries the tag of another tenant.
    pub cross_tenant: u64,
    /// Descriptions of the first few findings of each kind, naming members by user id.
    pub examples: Vec<String>,
}

impl Findings {
    pub fn is_clean(&self) -> bool {
        self.undelivered == 0
            && self.order_violations == 0
            && self.gaps == 0
            && self.conflicting_duplicates == 0
            && self.cross_tenant == 0
    }

    /// Returns one line per kind of failed check, then the examples, each prefixed with the
    /// conversation's `name`. `drain` is the wait after sending that the undelivered count
    /// refers to. Returns nothing when the findings are clean.
    pub fn failure_lines(&self, name: &str, drain: std::time::Duration) -> Vec<String> {
        let mut lines = Vec::new();
        if self.undelivered > 0 {
            lines.push(format!(
                "{name}: {} deliveries of acked messages missing {} s after sending ended",
                self.undelivered,
                drain.as_secs()
            ));
        }
        if self.order_violations > 0 {
            lines.push(format!(
                "{name}: {} messages arrived with a seq not above the previous one",
                self.order_violations
            ));
        }
        if self.gaps > 0 {
            lines.push(format!(
                "{name}: {} seqs missing between received ones",
                self.gaps
            ));
        }
        if self.conflicting_duplicates > 0 {
            lines.push(format!(
                "{name}: {} seqs received twice with different bodies",
                self.conflicting_duplicates
            ));
        }
        if self.cross_tenant > 0 {
            lines.push(format!(
                "{name}: {} messages of another tenant reached this tenant's sessions",
                self.cross_tenant
            ));
        }
        if !self.is_clean() {
            lines.extend(
                self.examples
                    .iter()
                    .map(|example| format!("{name}: {example}")),
            );
        }
        lines
    }
}

/// Examples already written per kind of finding.
#[derive(Default)]
struct ExampleCounts {
    undelivered: usize,
    order: usize,
    gaps: usize,
    conflicts: usize,
    cross_tenant: usize,
}

/// Pushes `example()` to `findings` unless `count` has reached [`MAX_EXAMPLES`].
fn push_example(findings: &mut Findings, count: &mut usize, example: impl FnOnce() -> String) {
    if *count < MAX_EXAMPLES {
        *count += 1;
        findings.examples.push(example());
    }
}

/// Checks one conversation's log. `member_names` gives the name of each member index for the
/// examples, and must be as long as `log.acked` and `log.delivered`.
pub fn check_conversation(log: &ConversationLog, member_names: &[String]) -> Findings {
    let owners = seq_owners(log);
    let mut findings = Findings::default();
    let mut examples = ExampleCounts::default();

    for (receiver, events) in log.delivered.iter().enumerate() {
        let name = &member_names[receiver];
        let last_seq = check_stream(log, name, events, &mut findings, &mut examples);
        let received: HashSet<u64> = events.iter().map(|event| event.seq).collect();

        // The conversation is new, so its first seq is 1.
        for seq in 1..last_seq {
            if received.contains(&seq) || owners.get(&seq) == Some(&(receiver as u32)) {
                continue;
            }
            findings.gaps += 1;
            push_example(&mut findings, &mut examples.gaps, || {
                let sender = match owners.get(&seq) {
                    Some(&index) => member_names[index as usize].clone(),
                    None => "an unknown sender".to_string(),
                };
                format!("{name} is missing seq {seq} from {sender} but received seq {last_seq}")
            });
        }

        for (sender, seqs) in log.acked.iter().enumerate() {
            if sender == receiver {
                continue;
            }
            for &seq in seqs {
                if received.contains(&seq) {
                    continue;
                }
                findings.undelivered += 1;
                push_example(&mut findings, &mut examples.undelivered, || {
                    format!(
                        "{name} did not receive seq {seq} from {}, which was acked",
                        member_names[sender]
                    )
                });
            }
        }
    }
    findings
}

/// Checks the order, repeats and tenant tags of one member's stream, and returns the highest
/// seq it received.
fn check_stream(
    log: &ConversationLog,
    name: &str,
    events: &[Received],
    findings: &mut Findings,
    examples: &mut ExampleCounts,
) -> u64 {
    let mut first_digests: HashMap<u64, Option<u64>> = HashMap::with_capacity(events.len());
    let mut last_seq = 0;

    for event in events {
        let seq = event.seq;
        if let (Some(own), Some(tag)) = (log.tenant_tag, event.tenant_tag) {
            if own != tag {
                findings.cross_tenant += 1;
                push_example(findings, &mut examples.cross_tenant, || {
                    format!("{name} received seq {seq} with the tag {tag:016x} of another tenant")
                });
            }
        }

        if let Some(&first) = first_digests.get(&seq) {
            let conflicting = matches!((first, event.body_digest), (Some(a), Some(b)) if a != b);
            if conflicting {
                findings.conflicting_duplicates += 1;
                push_example(findings, &mut examples.conflicts, || {
                    format!("{name} received seq {seq} twice with different bodies")
                });
            } else if log.redelivery_expected {
                findings.redeliveries += 1;
            } else {
                findings.order_violations += 1;
                push_example(findings, &mut examples.order, || {
                    format!("{name} received seq {seq} again after seq {last_seq}")
                });
            }
            continue;
        }
        first_digests.insert(seq, event.body_digest);

        if seq < last_seq {
            findings.order_violations += 1;
            push_example(findings, &mut examples.order, || {
                format!("{name} received seq {seq} after seq {last_seq}")
            });
            continue;
        }
        last_seq = seq;
    }
    last_seq
}

/// Maps each seq seen in an ack or an event to the index of the member that sent it.
fn seq_owners(log: &ConversationLog) -> HashMap<u64, u32> {
    let mut owners = HashMap::new();
    for (sender, seqs) in log.acked.iter().enumerate() {
        for &seq in seqs {
            owners.insert(seq, sender as u32);
        }
    }
    for events in &log.delivered {
        for event in events {
            if event.sender != UNKNOWN_SENDER {
                owners.entry(event.seq).or_insert(event.sender);
            }
        }
    }
    owners
}

#[cfg(test)]
mod tests {
    use std::process::ExitCode;
    use std::time::Duration;

    use super::*;
    use crate::report::{GroupStats, Report, RunSettings};

    const OWN_TAG: u64 = 0x0123_4567_89ab_cdef;
    const OTHER_TAG: u64 = 0xfedc_ba98_7654_3210;

    fn names(count: usize) -> Vec<String> {
        (0..count).map(|i| format!("user-{i}")).collect()
    }

    /// Builds a stream of `(seq, sender)` pairs without recorded bodies.
    fn stream(pairs: &[(u64, u32)]) -> Vec<Received> {
        pairs
            .iter()
            .map(|&(seq, sender)| Received::new(seq, sender))
            .collect()
    }

    /// Builds a received message with the body `body` from this tenant.
    fn tagged(seq: u64, sender: u32, body: &str) -> Received {
        Received {
            seq,
            sender,
            body_digest: Some(body_digest(body)),
            tenant_tag: Some(OWN_TAG),
        }
    }

    /// Three members who each sent one message (seqs 1, 2, 3) and received the other two.
    fn complete_log() -> ConversationLog {
        ConversationLog {
            acked: vec![vec![1], vec![2], vec![3]],
            delivered: vec![
                stream(&[(2, 1), (3, 2)]),
                stream(&[(1, 0), (3, 2)]),
                stream(&[(1, 0), (2, 1)]),
            ],
            ..ConversationLog::default()
        }
    }

    /// Two members: member 1 sent seqs 1 to 4, member 0 received them with bodies and tags,
    /// and the server redelivers after a reconnect.
    fn tagged_log(received: Vec<Received>) -> ConversationLog {
        ConversationLog {
            acked: vec![vec![], vec![1, 2, 3, 4]],
            delivered: vec![received, vec![]],
            tenant_tag: Some(OWN_TAG),
            redelivery_expected: true,
        }
    }

    fn body(seq: u64) -> String {
        format!(r#"{{"n":{seq}}}"#)
    }

    /// Builds the report of a run whose only findings are these, as a scenario does.
    fn report_of(findings: &Findings) -> Report {
        Report {
            scenario: "test",
            settings: RunSettings {
                tenants: 1,
                connections_per_tenant: 2,
                messages_per_connection: 4,
                body_bytes: 64,
                window: 1,
                duration_secs: 1,
                drain_secs: 1,
                target: "none".to_string(),
                quotas: Default::default(),
            },
            interrupted: false,
            tenants: Vec::new(),
            total: GroupStats::default().to_report("total"),
            failures: findings.failure_lines("lt-test", Duration::from_secs(1)),
            server_log: None,
        }
    }

    /// Asserts that the findings fail the run with exit code 1.
    fn assert_run_fails(findings: &Findings) {
        assert!(!findings.is_clean(), "{findings:?}");
        let report = report_of(findings);
        assert!(!report.failures.is_empty());
        assert_eq!(crate::exit_code_for(&report), ExitCode::from(1));
    }

    #[test]
    fn complete_log_is_clean() {
        let findings = check_conversation(&complete_log(), &names(3));

        assert!(findings.is_clean(), "{findings:?}");
        assert!(findings.examples.is_empty());
        assert!(findings.failure_lines("t", Duration::ZERO).is_empty());
    }

    #[test]
    fn clean_run_exits_with_zero() {
        let findings = check_conversation(&complete_log(), &names(3));

        let report = report_of(&findings);

        assert_eq!(crate::exit_code_for(&report), ExitCode::SUCCESS);
    }

    #[test]
    fn missing_acked_message_is_undelivered_and_gap() {
        let mut log = complete_log();
        // Member 2 lost seq 1 but received seq 2 after it, so seq 1 is also a gap.
        log.delivered[2] = stream(&[(2, 1)]);
        // Member 0 lost seq 3, the last one, so that is no gap.
        log.delivered[0] = stream(&[(2, 1)]);

        let findings = check_conversation(&log, &names(3));

        assert_eq!(findings.undelivered, 2);
        assert_eq!(findings.gaps, 1);
        assert_eq!(findings.order_violations, 0);
        assert!(findings
            .examples
            .iter()
            .any(|e| e.contains("user-2 is missing seq 1")));
        assert_run_fails(&findings);
    }

    #[test]
    fn acked_message_never_received_fails_run() {
        let mut log = complete_log();
        // Member 1 never got seq 3, the last acked message, so only the ack shows the loss.
        log.delivered[1] = stream(&[(1, 0)]);

        let findings = check_conversation(&log, &names(3));

        assert_eq!(findings.undelivered, 1);
        assert_eq!(findings.gaps, 0);
        assert!(findings.examples[0].contains("user-1 did not receive seq 3 from user-2"));
        assert_run_fails(&findings);
    }

    #[test]
    fn seq_gap_fails_run() {
        // Member 1's send of seq 2 timed out without an ack, and member 0 never got it.
        let log = ConversationLog {
            acked: vec![vec![], vec![1, 3]],
            delivered: vec![stream(&[(1, 1), (3, 1)]), vec![]],
            ..ConversationLog::default()
        };

        let findings = check_conversation(&log, &names(2));

        assert_eq!(findings.gaps, 1);
        assert_eq!(findings.undelivered, 0);
        assert!(
            findings.examples[0].contains("an unknown sender"),
            "{findings:?}"
        );
        assert_run_fails(&findings);
    }

    #[test]
    fn own_messages_are_no_gap() {
        let log = ConversationLog {
            acked: vec![vec![1, 2, 3], vec![4]],
            delivered: vec![stream(&[(4, 1)]), stream(&[(1, 0), (2, 0), (3, 0)])],
            ..ConversationLog::default()
        };

        let findings = check_conversation(&log, &names(2));

        assert!(findings.is_clean(), "{findings:?}");
    }

    #[test]
    fn timed_out_own_send_is_no_gap() {
        // Member 0's send of seq 1 timed out, but member 1 received it, so its sender is known.
        let log = ConversationLog {
            acked: vec![vec![], vec![2]],
            delivered: vec![stream(&[(2, 1), (3, 1)]), stream(&[(1, 0)])],
            ..ConversationLog::default()
        };

        let findings = check_conversation(&log, &names(2));

        assert_eq!(findings.gaps, 0, "{findings:?}");
        assert_eq!(findings.undelivered, 0);
    }

    #[test]
    fn repeated_or_lower_seq_is_order_violation() {
        let log = ConversationLog {
            acked: vec![vec![], vec![1, 2, 3]],
            delivered: vec![stream(&[(1, 1), (3, 1), (2, 1), (3, 1)]), vec![]],
            ..ConversationLog::default()
        };

        let findings = check_conversation(&log, &names(2));

        assert_eq!(findings.order_violations, 2);
        assert_eq!(findings.redeliveries, 0);
        assert_eq!(findings.undelivered, 0);
        assert_eq!(findings.gaps, 0);
        assert_run_fails(&findings);
    }

    #[test]
    fn backwards_seqs_after_sync_fail_run() {
        // Member 0 saw 1 and 4 live, reconnected, and the sync returned 2 and 3 after 4.
        let received = vec![
            tagged(1, 1, &body(1)),
            tagged(4, 1, &body(4)),
            tagged(2, 1, &body(2)),
            tagged(3, 1, &body(3)),
        ];

        let findings = check_conversation(&tagged_log(received), &names(2));

        assert_eq!(findings.order_violations, 2);
        assert_eq!(findings.gaps, 0);
        assert_eq!(findings.undelivered, 0);
        assert!(findings.examples[0].contains("user-0 received seq 2 after seq 4"));
        assert_run_fails(&findings);
    }

    #[test]
    fn same_body_redelivery_after_sync_passes() {
        // Member 0 saw 1 and 2 live, reconnected, and the sync returned 2 again, then 3 and 4.
        let received = vec![
            tagged(1, 1, &body(1)),
            tagged(2, 1, &body(2)),
            tagged(2, 1, &body(2)),
            tagged(3, 1, &body(3)),
            tagged(4, 1, &body(4)),
        ];

        let findings = check_conversation(&tagged_log(received), &names(2));

        assert!(findings.is_clean(), "{findings:?}");
        assert_eq!(findings.redeliveries, 1);
    }

    #[test]
    fn duplicate_with_other_body_fails_run() {
        let received = vec![
            tagged(1, 1, &body(1)),
            tagged(2, 1, &body(2)),
            tagged(2, 1, r#"{"n":"not the original"}"#),
            tagged(3, 1, &body(3)),
            tagged(4, 1, &body(4)),
        ];

        let findings = check_conversation(&tagged_log(received), &names(2));

        assert_eq!(findings.conflicting_duplicates, 1);
        assert_eq!(findings.redeliveries, 0);
        assert_eq!(findings.order_violations, 0);
        assert!(findings.examples[0].contains("seq 2 twice with different bodies"));
        assert_run_fails(&findings);
    }

    #[test]
    fn message_of_other_tenant_fails_run() {
        let mut foreign = tagged(3, UNKNOWN_SENDER, &body(3));
        foreign.tenant_tag = Some(OTHER_TAG);
        let received = vec![
            tagged(1, 1, &body(1)),
            tagged(2, 1, &body(2)),
            foreign,
            tagged(4, 1, &body(4)),
        ];
        let mut log = tagged_log(received);
        // Seq 3 of this conversation never reached member 0, only the other tenant's seq 3.
        log.acked[1] = vec![1, 2, 4];

        let findings = check_conversation(&log, &names(2));

        assert_eq!(findings.cross_tenant, 1);
        assert!(
            findings.examples[0].contains("fedcba9876543210"),
            "{findings:?}"
        );
        assert_run_fails(&findings);
    }

    #[test]
    fn untagged_bodies_skip_tenant_check() {
        let mut log = complete_log();
        log.tenant_tag = Some(OWN_TAG);

        let findings = check_conversation(&log, &names(3));

        assert!(findings.is_clean(), "{findings:?}");
    }

    #[test]
    fn body_digest_tells_bodies_apart() {
        assert_eq!(body_digest(&body(1)), body_digest(&body(1)));
        assert_ne!(body_digest(&body(1)), body_digest(&body(2)));
    }
}
