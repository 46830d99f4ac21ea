//! Creation of the tenants, users, conversations and user tokens that a scenario runs on,
//! through the REST API with the platform admin token, and deletion of the tenants afterwards.

use bulkhead_client::proto::{
    ConversationKind, CreateConversationRequest, CreateTenantRequest, CreateUserRequest,
    MintTokenRequest, Quotas, QuotasPatch,
};
use bulkhead_client::RestClient;

/// Id of the one group conversation in each tenant of [`provision_tenants`].
const CONVERSATION_ID: &str = "steady";

/// One provisioned tenant: a group conversation whose members are all its users.
#[derive(Debug, Clone)]
pub struct TenantSetup {
    pub tenant: String,
    pub conversation: String,
    pub members: Vec<Member>,
    /// The tenant's quotas as the server returned them on creation, defaults included.
    pub quotas: Quotas,
}

/// A user of a provisioned tenant and the token its WebSocket connection authenticates with.
#[derive(Debug, Clone)]
pub struct Member {
    pub user: String,
    pub token: String,
}

/// Sizes and token lifetime of the tenants to create.
#[derive(Debug, Clone)]
pub struct Plan {
    pub tenants: u32,
    pub members_per_tenant: u32,
    pub token_ttl_secs: u64,
    /// Quotas that replace the server's defaults in every tenant.
    pub quotas: Option<QuotasPatch>,
}

/// One tenant to create with [`provision_tenant`].
#[derive(Debug, Clone)]
pub struct TenantSpec {
    pub id: String,
    pub name: String,
    pub members: u32,
    pub conversation: String,
    pub token_ttl_secs: u64,
    /// Quotas that replace the server's defaults.
    pub quotas: Option<QuotasPatch>,
}

/// Creates `plan.tenants` tenants named `lt-<n>-<run_suffix>`, each with users `user-0`,
/// `user-1`, ..., one group conversation with all of them, and one token per user.
///
/// Pushes each tenant id to `created` as soon as the tenant exists, so that the caller can
/// delete it even when a later step fails.
pub async fn provision_tenants(
    rest: &RestClient,
    plan: &Plan,
    run_suffix: &str,
    created: &mut Vec<String>,
) -> Result<Vec<TenantSetup>, String> {
    let mut setups = Vec::with_capacity(plan.tenants as usize);
    for index in 0..plan.tenants {
        let spec = TenantSpec {
            id: format!("lt-{index}-{run_suffix}"),
            name: format!("load test {run_suffix} tenant {index}"),
            members: plan.members_per_tenant,
            conversation: CONVERSATION_ID.to_string(),
            token_ttl_secs: plan.token_ttl_secs,
            quotas: plan.quotas.clone(),
        };
        setups.push(provision_tenant(rest, &spec, created).await?);
    }
    Ok(setups)
}

/// Creates one tenant with users `user-0`, `user-1`, ..., one group conversation with all of
/// them, and one token per user. Pushes the tenant id to `created` as soon as the tenant
/// exists, like [`provision_tenants`].
pub async fn provision_tenant(
    rest: &RestClient,
    spec: &TenantSpec,
    created: &mut Vec<String>,
) -> Result<TenantSetup, String> {
    let tenant = &spec.id;
    let request = CreateTenantRequest {
        id: tenant.clone(),
        name: spec.name.clone(),
        tier: None,
        quotas: spec.quotas.clone(),
        features: None,
    };
    let created_tenant = rest
        .create_tenant(&request)
        .await
        .map_err(|e| format!("failed to create tenant {tenant}: {e}"))?;
    created.push(tenant.clone());

    let setup = provision_members(rest, spec, created_tenant.tenant.quotas).await?;
    tracing::info!(
        tenant = %setup.tenant,
        members = setup.members.len(),
        conversation = %setup.conversation,
        "tenant provisioned"
    );
    Ok(setup)
}

async fn provision_members(
    rest: &RestClient,
    spec: &TenantSpec,
    quotas: Quotas,
) -> Result<TenantSetup, String> {
    let tenant = spec.id.as_str();
    let users: Vec<String> = (0..spec.members).map(|i| format!("user-{i}")).collect();

    for user in &users {
        let request = CreateUserRequest {
            id: user.clone(),
            display_name: None,
        };
        rest.create_user(tenant, &request)
            .await
            .map_err(|e| format!("failed to create user {user} in tenant {tenant}: {e}"))?;
    }

    let request = CreateConversationRequest {
        id: Some(spec.conversation.clone()),
        kind: ConversationKind::Group,
        members: users.clone(),
        name: None,
    };
    let conversation = rest
        .create_conversation(tenant, &request)
        .await
        .map_err(|e| format!("failed to create conversation in tenant {tenant}: {e}"))?;

    let mut members = Vec::with_capacity(users.len());
    for user in users {
        let request = MintTokenRequest {
            user: user.clone(),
            ttl_secs: spec.token_ttl_secs,
        };
        let minted = rest
            .mint_token(tenant, &request)
            .await
            .map_err(|e| format!("failed to mint a token for {user} in tenant {tenant}: {e}"))?;
        members.push(Member {
            user,
            token: minted.token,
        });
    }

    Ok(TenantSetup {
        tenant: tenant.to_string(),
        conversation: conversation.id,
        members,
        quotas,
    })
}

/// Deletes the tenants with all their data. A failure is logged and the remaining tenants are
/// still deleted.
pub async fn delete_tenants(rest: &RestClient, tenants: &[String]) {
    for tenant in tenants {
        match rest.delete_tenant(tenant).await {
            Ok(()) => tracing::info!(%tenant, "tenant deleted"),
            Err(error) => {
                tracing::warn!(%tenant, %error, "failed to delete tenant, which must now be deleted by hand")
            }
        }
    }
}
