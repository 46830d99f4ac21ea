//! Delivery checks for one conversation: every acked message reached every other member,
//! and each member's stream of `seq` values rises without gaps.
//!
//! A member's own messages are not sent back to its session, so they are missing from its
//! stream by design. A seq that is missing from a member's stream is a gap only when that
//! member did not send it.

use std::collections::{HashMap, HashSet};

/// Sender index for a `message` event whose `from` is not a member of the conversation.
pub const UNKNOWN_SENDER: u32 = u32::MAX;

/// Examples kept per kind of finding, so that a broken run does not print thousands of lines.
const MAX_EXAMPLES: usize = 5;

/// Sends and received events of one conversation's connections. Members are numbered by
/// their index in `acked` and `delivered`.
#[derive(Debug, Default)]
pub struct ConversationLog {
    /// Seqs from the acks of each member's sends.
    pub acked: Vec<Vec<u64>>,
    /// `(seq, sender index)` of each `message` event a member received, in arrival order.
    pub delivered: Vec<Vec<(u64, u32)>>,
}

/// The result of [`check_conversation`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// `(receiver, seq)` pairs where the receiver never got an acked message of another member.
    pub undelivered: u64,
    /// Events whose seq was not above the previous one the same member received.
    pub order_violations: u64,
    /// Seqs below a member's last received seq that it neither received nor sent.
    pub gaps: u64,
    /// Descriptions of the first few findings of each kind, naming members by user id.
    pub examples: Vec<String>,
}

impl Findings {
    pub fn is_clean(&self) -> bool {
        self.undelivered == 0 && self.order_violations == 0 && self.gaps == 0
    }
}

/// Checks one conversation's log. `member_names` gives the name of each member index for the
/// examples, and must be as long as `log.acked` and `log.delivered`.
pub fn check_conversation(log: &ConversationLog, member_names: &[String]) -> Findings {
    let owners = seq_owners(log);
    let mut findings = Findings::default();
    let mut undelivered_examples = 0;
    let mut order_examples = 0;
    let mut gap_examples = 0;

    for (receiver, events) in log.delivered.iter().enumerate() {
        let name = &member_names[receiver];
        let received: HashSet<u64> = events.iter().map(|&(seq, _)| seq).collect();

        let mut last_seq = 0;
        for &(seq, _) in events {
            if seq <= last_seq {
                findings.order_violations += 1;
                if order_examples < MAX_EXAMPLES {
                    order_examples += 1;
                    findings
                        .examples
                        .push(format!("{name} received seq {seq} after seq {last_seq}"));
                }
                continue;
            }
            last_seq = seq;
        }

        // The conversation is new, so its first seq is 1.
        for seq in 1..last_seq {
            if received.contains(&seq) || owners.get(&seq) == Some(&(receiver as u32)) {
                continue;
            }
            findings.gaps += 1;
            if gap_examples < MAX_EXAMPLES {
                gap_examples += 1;
                let sender = match owners.get(&seq) {
                    Some(&index) => member_names[index as usize].clone(),
                    None => "an unknown sender".to_string(),
                };
                findings.examples.push(format!(
                    "{name} is missing seq {seq} from {sender} but received seq {last_seq}"
                ));
            }
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
                if undelivered_examples < MAX_EXAMPLES {
                    undelivered_examples += 1;
                    findings.examples.push(format!(
                        "{name} did not receive seq {seq} from {}, which was acked",
                        member_names[sender]
                    ));
                }
            }
        }
    }
    findings
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
        for &(seq, sender) in events {
            if sender != UNKNOWN_SENDER {
                owners.entry(seq).or_insert(sender);
            }
        }
    }
    owners
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(count: usize) -> Vec<String> {
        (0..count).map(|i| format!("user-{i}")).collect()
    }

    /// Three members who each sent one message (seqs 1, 2, 3) and received the other two.
    fn complete_log() -> ConversationLog {
        ConversationLog {
            acked: vec![vec![1], vec![2], vec![3]],
            delivered: vec![
                vec![(2, 1), (3, 2)],
                vec![(1, 0), (3, 2)],
                vec![(1, 0), (2, 1)],
            ],
        }
    }

    #[test]
    fn complete_log_is_clean() {
        let findings = check_conversation(&complete_log(), &names(3));

        assert!(findings.is_clean(), "{findings:?}");
        assert!(findings.examples.is_empty());
    }

    #[test]
    fn missing_acked_message_is_undelivered_and_gap() {
        let mut log = complete_log();
        // Member 2 lost seq 1 but received seq 2 after it, so seq 1 is also a gap.
        log.delivered[2] = vec![(2, 1)];
        // Member 0 lost seq 3, the last one, so that is no gap.
        log.delivered[0] = vec![(2, 1)];

        let findings = check_conversation(&log, &names(3));

        assert_eq!(findings.undelivered, 2);
        assert_eq!(findings.gaps, 1);
        assert_eq!(findings.order_violations, 0);
        assert!(findings
            .examples
            .iter()
            .any(|e| e.contains("user-2 is missing seq 1")));
    }

    #[test]
    fn own_messages_are_no_gap() {
        let log = ConversationLog {
            acked: vec![vec![1, 2, 3], vec![4]],
            delivered: vec![vec![(4, 1)], vec![(1, 0), (2, 0), (3, 0)]],
        };

        let findings = check_conversation(&log, &names(2));

        assert!(findings.is_clean(), "{findings:?}");
    }

    #[test]
    fn timed_out_own_send_is_no_gap() {
        // Member 0's send of seq 1 timed out, but member 1 received it, so its sender is known.
        let log = ConversationLog {
            acked: vec![vec![], vec![2]],
            delivered: vec![vec![(2, 1), (3, 1)], vec![(1, 0)]],
        };

        let findings = check_conversation(&log, &names(2));

        assert_eq!(findings.gaps, 0, "{findings:?}");
        assert_eq!(findings.undelivered, 0);
    }

    #[test]
    fn seq_nobody_saw_is_gap() {
        let log = ConversationLog {
            acked: vec![vec![], vec![1, 3]],
            delivered: vec![vec![(1, 1), (3, 1)], vec![]],
        };

        let findings = check_conversation(&log, &names(2));

        assert_eq!(findings.gaps, 1);
        assert!(
            findings.examples[0].contains("an unknown sender"),
            "{findings:?}"
        );
    }

    #[test]
    fn repeated_or_lower_seq_is_order_violation() {
        let log = ConversationLog {
            acked: vec![vec![], vec![1, 2, 3]],
            delivered: vec![vec![(1, 1), (3, 1), (2, 1), (3, 1)], vec![]],
        };

        let findings = check_conversation(&log, &names(2));

        assert_eq!(findings.order_violations, 2);
        assert_eq!(findings.undelivered, 0);
        assert_eq!(findings.gaps, 0);
    }
}
