//! Tenant branding: how the tenant's apps present it to their users.

use actix_web::{get, put, web, HttpRequest, HttpResponse};
use bulkhead_proto::Branding;
use bulkhead_storage::BrandingRecord;
use language_tags::LanguageTag;

use crate::{auth::Action, error::ApiError, state::AppState};

/// Maximum display name length, in characters. Long enough for a company's legal name.
const MAX_DISPLAY_NAME_CHARS: usize = 100;

/// Maximum welcome message length, in characters: a short paragraph, not a document.
const MAX_WELCOME_MESSAGE_CHARS: usize = 2000;

/// Maximum logo URL length, in bytes. A conservative bound, chosen without measurement; it
/// may be raised.
const MAX_LOGO_URL_BYTES: usize = 2048;

type Response = Result<HttpResponse, ApiError>;

/// Returns the branding; every field is `null` until a PUT sets it. Readable by the tenant's
/// users with their user token, so apps can show it before anything else.
#[get("/{tid}/branding")]
pub(super) async fn get_branding(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> Response {
    let ctx = state.tenant_scope(&req, &path, Action::ReadBranding)?;
    let record = ctx.tenant.store().branding()?.unwrap_or_default();
    Ok(HttpResponse::Ok().json(to_wire(record)))
}

#[put("/{tid}/branding")]
pub(super) async fn put_branding(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Branding>,
) -> Response {
    let ctx = state.tenant_scope(&req, &path, Action::UpdateBranding)?;
    let record = validate(body.into_inner())?;
    ctx.tenant.put_branding(&record).await?;
    tracing::info!(tenant = %path, by = %ctx.principal, "branding updated");
    Ok(HttpResponse::Ok().json(to_wire(record)))
}

fn to_wire(record: BrandingRecord) -> Branding {
    Branding {
        display_name: record.display_name,
        logo_url: record.logo_url,
        theme_color: record.theme_color,
        welcome_message: record.welcome_message,
        default_locale: record.default_locale,
    }
}

/// Checks every field and returns the record to store, with the colour in lower case and the
/// locale in its canonical case.
fn validate(branding: Branding) -> Result<BrandingRecord, ApiError> {
    Ok(BrandingRecord {
        display_name: branding.display_name.map(|v| text("display_name", v, MAX_DISPLAY_NAME_CHARS)).transpose()?,
        logo_url: branding.logo_url.map(logo_url).transpose()?,
        theme_color: branding.theme_color.map(theme_color).transpose()?,
        welcome_message: branding
            .welcome_message
            .map(|v| text("welcome_message", v, MAX_WELCOME_MESSAGE_CHARS))
            .transpose()?,
        default_locale: branding.default_locale.map(locale).transpose()?,
        updated_at_ms: bulkhead_storage::now_ms(),
    })
}

fn text(field: &str, value: String, max_chars: usize) -> Result<String, ApiError> {
    let value = value.trim();
    let chars = value.chars().count();
    if chars == 0 || chars > max_chars {
        return Err(ApiError::invalid(format!(
            "{field} must have 1 to {max_chars} characters (it has {chars}); use null to unset it"
        )));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::invalid(format!("{field} must not contain control characters other than newline")));
    }
    Ok(value.to_owned())
}

fn logo_url(value: String) -> Result<String, ApiError> {
    if value.len() > MAX_LOGO_URL_BYTES {
        return Err(ApiError::invalid(format!("logo_url must have at most {MAX_LOGO_URL_BYTES} bytes")));
    }
    let url = url::Url::parse(&value).map_err(|e| ApiError::invalid(format!("logo_url {value:?} is not a valid URL: {e}")))?;
    if url.scheme() != "https" {
        return Err(ApiError::invalid(format!(
            "logo_url must use https, not {:?}, so apps do not load it over plain HTTP",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::invalid(format!("logo_url {value:?} has no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ApiError::invalid("logo_url must not contain a user name or password"));
    }
    Ok(url.into())
}

fn theme_color(value: String) -> Result<String, ApiError> {
    let valid = value.len() == 7 && value.starts_with('#') && value[1..].chars().all(|c| c.is_ascii_hexdigit());
    if !valid {
        return Err(ApiError::invalid(format!(
            "theme_color {value:?} is invalid; expected # and six hex digits, such as #1a73e8"
        )));
    }
    Ok(value.to_ascii_lowercase())
}

fn locale(value: String) -> Result<String, ApiError> {
    let invalid = |reason: String| {
        ApiError::invalid(format!(
            "default_locale {value:?} is not a valid BCP 47 language tag ({reason}); use a tag such as en or zh-CN"
        ))
    };
    let tag = LanguageTag::parse(&value).map_err(|e| invalid(e.to_string()))?;
    tag.validate().map_err(|e| invalid(e.to_string()))?;
    Ok(tag.into_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locale_accepts_registered_tags() {
        assert_eq!(locale("en".into()).unwrap(), "en");
        assert_eq!(locale("zh-CN".into()).unwrap(), "zh-CN");
        assert_eq!(locale("zh-hans-cn".into()).unwrap(), "zh-Hans-CN");
        assert_eq!(locale("pt-BR".into()).unwrap(), "pt-BR");
    }

    #[test]
    fn locale_rejects_malformed_and_unregistered_tags() {
        for bad in ["", "english", "en_US", "zz-ZZ", "en--US", "12"] {
            assert!(locale(bad.into()).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn logo_url_needs_https_and_a_host() {
        assert_eq!(logo_url("https://cdn.example.com/logo.png".into()).unwrap(), "https://cdn.example.com/logo.png");
        for bad in ["http://cdn.example.com/logo.png", "data:image/png;base64,AAAA", "https://user:pw@example.com/a.png", "logo.png"] {
            assert!(logo_url(bad.into()).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn theme_color_is_six_hex_digits() {
        assert_eq!(theme_color("#1A73E8".into()).unwrap(), "#1a73e8");
        for bad in ["1a73e8", "#1a73e", "#1a73e8f", "#gggggg", "red"] {
            assert!(theme_color(bad.into()).is_err(), "{bad} accepted");
        }
    }
}
