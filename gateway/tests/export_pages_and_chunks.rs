//! The export writer reads a tenant larger than its pages (users, conversations and messages)
//! and hands the lines out in bounded chunks. Every record appears once, seqs stay continuous
//! across page boundaries and no chunk grows far past its size. A sink that stops taking
//! chunks stops the export. This runs the writer on a real RocksDB, without the server.

use bulkhead_gateway::export::writer::{write_export, ExportError, CHUNK_BYTES};
use bulkhead_storage::{
    ApiKeyRecord, ConvId, ConversationKind, ConversationRecord, KeyRole, MessageRecord, QuotaLimits, Storage,
    StorageOptions, TenantId, TenantRecord, TenantStatus, TenantStore, Tier, UserRecord,
};
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const USERS: usize = 1_200;
const CONVERSATIONS: usize = 230;
const MESSAGES_IN_FIRST: u64 = 1_234;

async fn tenant(storage: &std::sync::Arc<Storage>) -> TenantStore {
    let id = TenantId::parse("big").unwrap();
    let record = TenantRecord {
        id: id.clone(),
        name: "Big".into(),
        tier: Tier::Cf,
        status: TenantStatus::Active,
        quotas: QuotaLimits {
            cpu_millicores: 1000,
            memory_bytes: 64 << 20,
            ingress_bytes_per_sec: 1 << 20,
            egress_bytes_per_sec: 1 << 20,
            max_connections: 100,
            max_message_bytes: 16 << 10,
            max_storage_bytes: 1 << 30,
            weight: 1,
            rest_requests_per_sec: QuotaLimits::DEFAULT_REST_REQUESTS_PER_SEC,
        },
        features: vec![],
        signing_secret: "secret".into(),
        created_at_ms: 0,
    };
    let key = ApiKeyRecord {
        id: "key-big".into(),
        tenant: id.clone(),
        role: KeyRole::Admin,
        name: None,
        secret_sha256: [0; 32],
        created_at_ms: 0,
        expires_at_ms: None,
    };
    storage.create_tenant(&record, &key).await.expect("create tenant");
    storage.tenant_store(&id).unwrap().expect("tenant store")
}

async fn fill(store: &TenantStore) -> TestResult {
    let mut batch = store.batch();
    for n in 0..USERS {
        batch.put_user(&UserRecord {
            id: format!("user{n:04}"),
            display_name: Some(format!("User number {n}")),
            created_at_ms: 1,
        });
    }
    for n in 0..CONVERSATIONS {
        let id = format!("conv{n:03}");
        let members = vec!["user0000".to_string(), "user0001".to_string()];
        for member in &members {
            batch.put_membership(member, &id);
        }
        batch.put_conversation(&ConversationRecord {
            id: id.clone(),
            kind: ConversationKind::Group,
            name: None,
            members,
            created_at_ms: 1,
        });
        let conv = ConvId::parse(&id)?;
        let count = if n == 0 { MESSAGES_IN_FIRST } else { 1 };
        for seq in 1..=count {
            let body = format!(r#"{{"text":"{}","n":{seq}}}"#, "x".repeat(200));
            batch.put_message(&conv, &MessageRecord::new(seq, "user0000".into(), format!("m{seq}"), seq, body));
        }
    }
    store.commit(batch).await?;
    Ok(())
}

#[tokio::test]
async fn large_tenant_exports_in_pages_and_chunks() -> TestResult {
    let dir = tempfile::tempdir()?;
    let storage = Storage::open(dir.path(), &StorageOptions::default())?;
    let store = tenant(&storage).await;
    fill(&store).await?;

    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let counts = write_export(&store, None, 1, |chunk| {
        chunks.push(chunk);
        true
    })?;

    let messages = MESSAGES_IN_FIRST + CONVERSATIONS as u64 - 1;
    assert_eq!((counts.users, counts.conversations, counts.messages), (USERS as u64, CONVERSATIONS as u64, messages));
    assert!(chunks.len() > 4, "{} chunks", chunks.len());
    for chunk in &chunks {
        assert!(chunk.ends_with(b"\n"), "a chunk ends at a line boundary");
        assert!(chunk.len() < CHUNK_BYTES + 1024, "a chunk of {} bytes", chunk.len());
    }

    let text = String::from_utf8(chunks.concat())?;
    let lines: Vec<Value> = text.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    let users: Vec<&str> = lines.iter().filter(|l| l["type"] == "user").map(|l| l["id"].as_str().unwrap()).collect();
    let expected_users: Vec<String> = (0..USERS).map(|n| format!("user{n:04}")).collect();
    assert_eq!(users, expected_users);
    let first_seqs: Vec<u64> = lines
        .iter()
        .filter(|l| l["type"] == "message" && l["conv"] == "conv000")
        .map(|l| l["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(first_seqs, (1..=MESSAGES_IN_FIRST).collect::<Vec<_>>());
    let conversations = lines.iter().filter(|l| l["type"] == "conversation").count();
    assert_eq!(conversations, CONVERSATIONS);
    assert_eq!(lines.last().unwrap()["type"], "end");
    Ok(())
}

#[tokio::test]
async fn closed_sink_stops_the_export() -> TestResult {
    let dir = tempfile::tempdir()?;
    let storage = Storage::open(dir.path(), &StorageOptions::default())?;
    let store = tenant(&storage).await;
    fill(&store).await?;

    let mut calls = 0;
    let result = write_export(&store, None, 1, |_| {
        calls += 1;
        calls < 2
    });

    assert!(matches!(result, Err(ExportError::SinkClosed)), "{result:?}");
    assert_eq!(calls, 2, "no chunk is offered after the sink refused one");
    Ok(())
}
