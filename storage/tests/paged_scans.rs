//! Users and conversations read page by page return every record once, in id order, also when
//! one id is a prefix of another. The masking key is stored per tenant.

mod common;

use bulkhead_storage::{ConvId, ConversationKind, ConversationRecord, UserId, UserRecord};
use common::*;

fn user(id: &str) -> UserRecord {
    UserRecord {
        id: id.into(),
        display_name: None,
        created_at_ms: 0,
    }
}

fn conversation(id: &str) -> ConversationRecord {
    ConversationRecord {
        id: id.into(),
        kind: ConversationKind::Group,
        name: None,
        members: vec!["a".into()],
        created_at_ms: 0,
    }
}

#[tokio::test]
async fn pages_cover_every_record_once() -> TestResult {
    let dir = tempfile::tempdir()?;
    let storage = open(&dir);
    let store = create_tenant(&storage, "acme").await;
    let ids = ["a", "a.b", "ab", "b", "b0", "bb", "c"];
    let mut batch = store.batch();
    for id in ids {
        batch.put_user(&user(id));
        batch.put_conversation(&conversation(id));
    }
    store.commit(batch).await?;

    let mut users = Vec::new();
    let mut after: Option<UserId> = None;
    loop {
        let page = store.users_page(after.as_ref(), 2)?;
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(UserId::parse(&last.id)?);
        users.extend(page.into_iter().map(|u| u.id));
    }
    assert_eq!(users, ids);

    let mut conversations = Vec::new();
    let mut after: Option<ConvId> = None;
    loop {
        let page = store.conversations_page(after.as_ref(), 3)?;
        let Some(last) = page.last() else { break };
        after = Some(ConvId::parse(&last.id)?);
        conversations.extend(page.into_iter().map(|c| c.id));
    }
    assert_eq!(conversations, ids);
    Ok(())
}

#[tokio::test]
async fn masking_key_round_trip() -> TestResult {
    let dir = tempfile::tempdir()?;
    let storage = open(&dir);
    let store = create_tenant(&storage, "acme").await;
    let other = create_tenant(&storage, "globex").await;
    assert_eq!(store.masking_key()?, None);

    let mut batch = store.batch();
    batch.put_masking_key(&[9; 32]);
    store.commit(batch).await?;

    assert_eq!(store.masking_key()?, Some([9; 32]));
    assert_eq!(other.masking_key()?, None, "the key belongs to one tenant");
    Ok(())
}
