//! Events of a person's account that the person hears about by email: their second factors
//! changed (by them or by an administrator), or a sign-in from a device not seen before. One
//! seam per kind of event, called where the event happens; a notice that cannot be sent is
//! logged and never fails the request (the change has happened).

use super::config::PoolConfig;
use super::delivery;
use super::i18n::Lang;
use super::store::{Store, User};

/// A change of a user's second factors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorChange {
    TotpOn,
    TotpOff,
    RecoveryCodes,
    PasskeyAdded,
    PasskeyRemoved,
    /// An administrator removed TOTP and the recovery codes.
    TotpResetByAdmin,
    /// An administrator removed a passkey.
    PasskeyRemovedByAdmin,
}

impl FactorChange {
    /// The change in words, for the notice.
    pub fn words(self, lang: Lang) -> &'static str {
        use FactorChange::*;
        match (self, lang) {
            (TotpOn, Lang::En) => "an authenticator app was set up",
            (TotpOn, Lang::Ja) => "認証アプリが設定されました",
            (TotpOff, Lang::En) => "the authenticator app was turned off",
            (TotpOff, Lang::Ja) => "認証アプリが無効にされました",
            (RecoveryCodes, Lang::En) => {
                "new recovery codes were made (the old ones no longer work)"
            }
            (RecoveryCodes, Lang::Ja) => {
                "新しいリカバリーコードが発行されました（以前のコードは使えません）"
            }
            (PasskeyAdded, Lang::En) => "a passkey was added",
            (PasskeyAdded, Lang::Ja) => "パスキーが追加されました",
            (PasskeyRemoved, Lang::En) => "a passkey was removed",
            (PasskeyRemoved, Lang::Ja) => "パスキーが削除されました",
            (TotpResetByAdmin, Lang::En) => "an administrator removed your authenticator app",
            (TotpResetByAdmin, Lang::Ja) => "管理者が認証アプリの設定を削除しました",
            (PasskeyRemovedByAdmin, Lang::En) => "an administrator removed a passkey",
            (PasskeyRemovedByAdmin, Lang::Ja) => "管理者がパスキーを削除しました",
        }
    }

    /// The audit action when the user made the change themselves; an administrator's change
    /// is audited by the administration layer with the administrator as the actor.
    fn user_action(self) -> Option<&'static str> {
        use FactorChange::*;
        match self {
            TotpOn => Some("mfa_enrol"),
            TotpOff => Some("mfa_off"),
            RecoveryCodes => Some("recovery_codes"),
            PasskeyAdded => Some("passkey_add"),
            PasskeyRemoved => Some("passkey_remove"),
            TotpResetByAdmin | PasskeyRemovedByAdmin => None,
        }
    }
}

/// `user`'s second factors changed: audited (when the user did it) and told to the user by
/// email, in their language (`locale`, else `lang`). A failed send is logged.
pub async fn factors_changed(
    cfg: &PoolConfig,
    store: &Store,
    user: &User,
    change: FactorChange,
    lang: Lang,
) {
    if let Some(action) = change.user_action() {
        super::audit::by_user(store, user, action).await;
    }
    let lang = delivery::user_lang(user, lang);
    if let Err(e) =
        delivery::notify_mfa_changed(cfg, user, change.words(lang), lang, super::now()).await
    {
        tracing::error!(error = %e, sub = %user.sub, "cannot send the notice that second factors changed");
    }
}

/// A successful interactive sign-in from `user_agent` at `ip`: remembers the device and, when
/// it is new for a user who has signed in before, sends the new-device notice — in the
/// background, so the sign-in does not wait for the mail server. Failures are logged.
pub fn signed_in(
    cfg: std::sync::Arc<PoolConfig>,
    store: Store,
    user: User,
    user_agent: String,
    ip: std::net::IpAddr,
    lang: Lang,
) {
    tokio::spawn(async move {
        let lang = delivery::user_lang(&user, lang);
        if let Err(e) =
            delivery::sign_in_seen(&cfg, &store, &user, &user_agent, ip, lang, super::now()).await
        {
            tracing::error!(error = %e, sub = %user.sub, "cannot record the device of a sign-in or send its notice");
        }
    });
}
