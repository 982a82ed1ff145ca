//! The hosted pages' languages: English and Japanese, chosen by `Accept-Language` (highest
//! q-value among the ones we have; English otherwise). Every visible string, including
//! validation messages, comes from here; templates receive the table as `t`.

use std::collections::BTreeMap;

use super::attributes::{AttributeError, AttributeProblem};
use super::password::Rule;

pub use crate::lang::{LANG_COOKIE, Lang, SwitchLink, lang_cookie, switch_links};

const EN: &[(&str, &str)] = &[
    ("sign_in", "Sign in"),
    ("sign_up", "Sign up"),
    ("sign_out", "Sign out"),
    ("username", "User name"),
    ("username_or_email", "User name or email"),
    ("password", "Password"),
    ("new_password", "New password"),
    ("current_password", "Current password"),
    ("code", "Verification code"),
    ("confirm_title", "Confirm your account"),
    ("confirm_help", "Enter the 6-digit code we sent you."),
    ("confirm", "Confirm"),
    ("resend", "Send a new code"),
    ("forgot_title", "Forgot your password?"),
    (
        "forgot_help",
        "Enter your user name or email and we will send you a code to reset your password.",
    ),
    ("send_code", "Send code"),
    ("reset_title", "Reset your password"),
    ("invite_title", "Choose your password"),
    ("reset", "Reset password"),
    ("change_title", "Choose a new password"),
    (
        "change_help",
        "Your password must be changed before you continue.",
    ),
    ("change", "Change password"),
    ("signed_out_title", "Signed out"),
    ("signed_out", "You have been signed out."),
    ("signed_in_title", "Signed in"),
    ("signed_in_as", "You are signed in as"),
    ("mfa_title", "Two-step verification"),
    (
        "mfa_help",
        "Enter the 6-digit code from your authenticator app.",
    ),
    ("mfa_code", "Authentication code"),
    (
        "mfa_recovery_hint",
        "Lost your phone? Enter one of your recovery codes instead.",
    ),
    ("verify", "Verify"),
    (
        "mfa_bad_code",
        "That code is not correct or was already used. Enter the current code from your authenticator app (wait for the next one if you just used it), or a recovery code.",
    ),
    (
        "mfa_expired",
        "Your sign-in has timed out. Sign in again with your user name and password.",
    ),
    ("mfa_setup_title", "Set up two-step verification"),
    (
        "mfa_setup_help",
        "Scan this QR code with an authenticator app (Google Authenticator, Microsoft Authenticator, 1Password, …), then enter the 6-digit code the app shows.",
    ),
    (
        "mfa_secret_label",
        "Cannot scan? Enter this key in the app instead:",
    ),
    (
        "mfa_setup_required",
        "This site requires two-step verification. Set it up now to finish signing in.",
    ),
    (
        "mfa_setup_bad_code",
        "That code does not match. Check that the time on your phone is set automatically, then enter the code the app shows now.",
    ),
    (
        "mfa_setup_expired",
        "This set-up page expired. Scan the new QR code below and enter the code the app shows.",
    ),
    ("mfa_turn_on", "Turn on"),
    (
        "mfa_enrolled",
        "Two-step verification is on for your account.",
    ),
    ("mfa_recovery_left", "Unused recovery codes: {n}."),
    (
        "mfa_off",
        "Two-step verification is not enabled on this site. Ask your administrator.",
    ),
    ("mfa_setup_link", "Two-step verification"),
    (
        "mfa_manage_help",
        "Enter the current code from your authenticator app (or a recovery code) to change these settings.",
    ),
    ("mfa_new_recovery", "Get new recovery codes"),
    ("mfa_turn_off", "Turn off two-step verification"),
    (
        "mfa_turned_off",
        "Two-step verification is off. You can turn it on again from the \"Signed in\" page.",
    ),
    (
        "mfa_cannot_turn_off",
        "This site requires two-step verification, so it cannot be turned off. Ask your administrator to reset it if you lost your authenticator.",
    ),
    ("recovery_title", "Save your recovery codes"),
    (
        "recovery_help",
        "If you lose your phone, each of these codes signs you in once. Store them somewhere safe now: they will not be shown again.",
    ),
    ("continue", "Continue"),
    ("passkeys_link", "Passkeys"),
    ("passkeys_title", "Passkeys"),
    (
        "passkeys_help",
        "A passkey signs you in with your device's screen lock or a security key, without a password.",
    ),
    ("passkeys_none", "You have no passkeys yet."),
    ("passkey_name", "Name for the new passkey"),
    ("passkey_default_name", "My passkey"),
    ("passkey_add", "Add a passkey"),
    ("passkey_sign_in", "Sign in with a passkey"),
    (
        "passkey_failed",
        "The passkey could not be used. Try again, or sign in with your user name and password.",
    ),
    ("passkey_added", "The passkey was added."),
    ("passkey_removed", "The passkey was removed."),
    ("remove", "Remove"),
    (
        "passkeys_sign_in_first",
        "Sign in first, then open this page again to manage your passkeys.",
    ),
    (
        "passkeys_need_script",
        "Passkeys need JavaScript. Turn it on for this site, or keep signing in with your password.",
    ),
    (
        "passkey_needs_uv",
        "This site requires two-step verification: use a passkey protected by your device's PIN or biometrics, or sign in with your password.",
    ),
    ("no_account", "No account yet?"),
    ("have_account", "Already have an account?"),
    ("forgot_link", "Forgot your password?"),
    ("back_to_sign_in", "Back to sign in"),
    ("password_rules", "Password rules"),
    ("optional", "optional"),
    ("error_title", "Something went wrong"),
    ("bad_credentials", "Incorrect user name or password."),
    (
        "bad_credentials_invited",
        "Incorrect user name or password. Invited by an administrator? Choose your password with the link in your invitation email; if it has expired, ask the administrator for a new invitation.",
    ),
    (
        "locked",
        "Too many failed sign-in attempts. Try again in {s}.",
    ),
    (
        "throttled",
        "Too many sign-in attempts from your network. Try again in {s}.",
    ),
    (
        "signups_throttled",
        "Too many sign-ups from your network. Try again in an hour.",
    ),
    (
        "disabled",
        "This account is disabled. Contact your administrator.",
    ),
    (
        "csrf",
        "This form has expired or was not sent from this site. Please try again.",
    ),
    ("bad_code", "The code is not correct or has expired."),
    ("code_attempts", "Too many wrong codes. Request a new code."),
    (
        "code_sent",
        "If the account exists, we sent a code to its email address.",
    ),
    (
        "code_resent",
        "If the account needs confirming, we sent a new code.",
    ),
    ("confirmed", "Your account is confirmed. Please sign in."),
    (
        "password_reset",
        "Your password has been reset. Please sign in.",
    ),
    ("password_changed", "Your password has been changed."),
    (
        "password_set",
        "Your password has been set. Please sign in.",
    ),
    (
        "must_reset",
        "Your password must be reset. We sent a code to your email address.",
    ),
    (
        "needs_confirm",
        "Your account is not confirmed yet. Enter the code we sent you.",
    ),
    (
        "signup_disabled",
        "Sign-up is not open. Ask your administrator for an account.",
    ),
    (
        "delivery_failed",
        "We could not send the code. Please try again later.",
    ),
    (
        "user_exists",
        "An account with this user name already exists.",
    ),
    (
        "email_exists",
        "An account with this email address already exists.",
    ),
    (
        "same_password",
        "The new password must differ from the current one.",
    ),
    (
        "invalid_request",
        "This sign-in link is invalid or has expired. Go back to the application and start again.",
    ),
    (
        "unavailable",
        "The sign-in service is temporarily unavailable. Please try again.",
    ),
    (
        "busy",
        "The sign-in service is busy. Please try again in a few seconds.",
    ),
    ("err_missing", "{name}: required."),
    (
        "err_email",
        "{name}: “{value}” is not an email address like name@example.com.",
    ),
    (
        "err_phone",
        "{name}: “{value}” is not a valid phone number. Enter it like {international}, or {national} for a number in {region}.",
    ),
    (
        "err_date",
        "{name}: “{value}” is not a date in the form YYYY-MM-DD, like 1990-04-23.",
    ),
    (
        "err_url",
        "{name}: “{value}” is not a web address starting with https://.",
    ),
    (
        "err_long",
        "{name}: too long or contains control characters.",
    ),
    ("err_unknown", "{name}: this attribute cannot be set."),
    ("err_username_empty", "username: required."),
    ("err_username_long", "username: longer than 128 characters."),
    (
        "err_username_char",
        "username: may not contain spaces or control characters.",
    ),
    (
        "err_username_reserved",
        "username: names starting with a sign-in provider's name and “_” are reserved for that provider's users.",
    ),
    (
        "err_password",
        "password: does not meet these rules: {rules}.",
    ),
    ("rule_min", "at least {n} characters"),
    ("rule_max", "at most 256 characters"),
    ("rule_lower", "a lowercase letter"),
    ("rule_upper", "an uppercase letter"),
    ("rule_digit", "a digit"),
    ("rule_symbol", "a symbol"),
    ("mail_subject", "Your verification code"),
    (
        "mail_body",
        "Your verification code is {code}. It expires in {hours} hour(s).\nIf you did not ask for it, ignore this message.",
    ),
    ("attr_email", "Email"),
    ("attr_phone_number", "Phone number"),
    ("attr_name", "Full name"),
    ("attr_given_name", "Given name"),
    ("attr_family_name", "Family name"),
    ("attr_birthdate", "Date of birth (YYYY-MM-DD)"),
];

const JA: &[(&str, &str)] = &[
    ("sign_in", "サインイン"),
    ("sign_up", "新規登録"),
    ("sign_out", "サインアウト"),
    ("username", "ユーザー名"),
    ("username_or_email", "ユーザー名またはメールアドレス"),
    ("password", "パスワード"),
    ("new_password", "新しいパスワード"),
    ("current_password", "現在のパスワード"),
    ("code", "確認コード"),
    ("confirm_title", "アカウントの確認"),
    ("confirm_help", "お送りした6桁のコードを入力してください。"),
    ("confirm", "確認する"),
    ("resend", "コードを再送信"),
    ("forgot_title", "パスワードをお忘れですか？"),
    (
        "forgot_help",
        "ユーザー名またはメールアドレスを入力すると、パスワード再設定用のコードをお送りします。",
    ),
    ("send_code", "コードを送信"),
    ("reset_title", "パスワードの再設定"),
    ("invite_title", "パスワードを設定"),
    ("reset", "パスワードを再設定"),
    ("change_title", "新しいパスワードの設定"),
    ("change_help", "続行する前にパスワードを変更してください。"),
    ("change", "パスワードを変更"),
    ("signed_out_title", "サインアウトしました"),
    ("signed_out", "サインアウトしました。"),
    ("signed_in_title", "サインイン済み"),
    ("signed_in_as", "サインイン中のユーザー:"),
    ("mfa_title", "2段階認証"),
    (
        "mfa_help",
        "認証アプリに表示されている6桁のコードを入力してください。",
    ),
    ("mfa_code", "認証コード"),
    (
        "mfa_recovery_hint",
        "スマートフォンをなくした場合は、代わりにリカバリーコードを入力してください。",
    ),
    ("verify", "確認"),
    (
        "mfa_bad_code",
        "コードが正しくないか、すでに使用されています。認証アプリに今表示されているコード(使ったばかりの場合は次のコード)、またはリカバリーコードを入力してください。",
    ),
    (
        "mfa_expired",
        "サインインの有効期限が切れました。ユーザー名とパスワードでもう一度サインインしてください。",
    ),
    ("mfa_setup_title", "2段階認証の設定"),
    (
        "mfa_setup_help",
        "認証アプリ(Google Authenticator、Microsoft Authenticator、1Password など)でこのQRコードを読み取り、アプリに表示された6桁のコードを入力してください。",
    ),
    (
        "mfa_secret_label",
        "読み取れない場合は、このキーをアプリに入力してください:",
    ),
    (
        "mfa_setup_required",
        "このサイトでは2段階認証が必須です。サインインを完了するには今すぐ設定してください。",
    ),
    (
        "mfa_setup_bad_code",
        "コードが一致しません。スマートフォンの時刻が自動設定になっていることを確認し、アプリに今表示されているコードを入力してください。",
    ),
    (
        "mfa_setup_expired",
        "この設定ページの有効期限が切れました。下の新しいQRコードを読み取り、アプリに表示されたコードを入力してください。",
    ),
    ("mfa_turn_on", "有効にする"),
    ("mfa_enrolled", "このアカウントでは2段階認証が有効です。"),
    ("mfa_recovery_left", "未使用のリカバリーコード: {n}個"),
    (
        "mfa_off",
        "このサイトでは2段階認証が有効になっていません。管理者にお問い合わせください。",
    ),
    ("mfa_setup_link", "2段階認証"),
    (
        "mfa_manage_help",
        "設定を変更するには、認証アプリに表示されている現在のコード(またはリカバリーコード)を入力してください。",
    ),
    ("mfa_new_recovery", "新しいリカバリーコードを発行"),
    ("mfa_turn_off", "2段階認証を無効にする"),
    (
        "mfa_turned_off",
        "2段階認証を無効にしました。「サインイン済み」ページからいつでも再度有効にできます。",
    ),
    (
        "mfa_cannot_turn_off",
        "このサイトでは2段階認証が必須のため、無効にできません。認証アプリをなくした場合は管理者にリセットを依頼してください。",
    ),
    ("recovery_title", "リカバリーコードを保存してください"),
    (
        "recovery_help",
        "スマートフォンをなくしたときは、これらのコードでそれぞれ1回サインインできます。二度と表示されないので、今すぐ安全な場所に保管してください。",
    ),
    ("continue", "続ける"),
    ("passkeys_link", "パスキー"),
    ("passkeys_title", "パスキー"),
    (
        "passkeys_help",
        "パスキーを使うと、パスワードなしで端末の画面ロックやセキュリティキーでサインインできます。",
    ),
    ("passkeys_none", "パスキーはまだ登録されていません。"),
    ("passkey_name", "新しいパスキーの名前"),
    ("passkey_default_name", "マイパスキー"),
    ("passkey_add", "パスキーを追加"),
    ("passkey_sign_in", "パスキーでサインイン"),
    (
        "passkey_failed",
        "パスキーを使用できませんでした。もう一度試すか、ユーザー名とパスワードでサインインしてください。",
    ),
    ("passkey_added", "パスキーを追加しました。"),
    ("passkey_removed", "パスキーを削除しました。"),
    ("remove", "削除"),
    (
        "passkeys_sign_in_first",
        "先にサインインしてから、もう一度このページを開いてパスキーを管理してください。",
    ),
    (
        "passkeys_need_script",
        "パスキーには JavaScript が必要です。このサイトで有効にするか、引き続きパスワードでサインインしてください。",
    ),
    (
        "passkey_needs_uv",
        "このサイトでは2段階認証が必須です。端末のPINや生体認証で保護されたパスキーを使うか、パスワードでサインインしてください。",
    ),
    ("no_account", "アカウントをお持ちでない場合"),
    ("have_account", "アカウントをお持ちの場合"),
    ("forgot_link", "パスワードをお忘れですか？"),
    ("back_to_sign_in", "サインインに戻る"),
    ("password_rules", "パスワードの条件"),
    ("optional", "任意"),
    ("error_title", "エラーが発生しました"),
    (
        "bad_credentials",
        "ユーザー名またはパスワードが正しくありません。",
    ),
    (
        "bad_credentials_invited",
        "ユーザー名またはパスワードが正しくありません。管理者から招待された場合は、招待メールのリンクからパスワードを設定してください。期限が切れている場合は、管理者に招待の再送を依頼してください。",
    ),
    (
        "locked",
        "サインインの失敗が多すぎます。{s}後に再試行してください。",
    ),
    (
        "throttled",
        "お使いのネットワークからのサインイン試行が多すぎます。{s}後に再試行してください。",
    ),
    (
        "signups_throttled",
        "お使いのネットワークからのサインアップが多すぎます。1時間後に再試行してください。",
    ),
    (
        "disabled",
        "このアカウントは無効です。管理者に連絡してください。",
    ),
    (
        "csrf",
        "このフォームは有効期限切れか、このサイトから送信されたものではありません。もう一度お試しください。",
    ),
    ("bad_code", "コードが正しくないか、有効期限が切れています。"),
    (
        "code_attempts",
        "誤ったコードの入力が多すぎます。新しいコードを請求してください。",
    ),
    (
        "code_sent",
        "アカウントが存在する場合、登録メールアドレスにコードを送信しました。",
    ),
    (
        "code_resent",
        "確認が必要なアカウントの場合、新しいコードを送信しました。",
    ),
    (
        "confirmed",
        "アカウントが確認されました。サインインしてください。",
    ),
    (
        "password_reset",
        "パスワードを再設定しました。サインインしてください。",
    ),
    ("password_changed", "パスワードを変更しました。"),
    (
        "password_set",
        "パスワードを設定しました。サインインしてください。",
    ),
    (
        "must_reset",
        "パスワードの再設定が必要です。メールアドレスにコードを送信しました。",
    ),
    (
        "needs_confirm",
        "アカウントがまだ確認されていません。お送りしたコードを入力してください。",
    ),
    (
        "signup_disabled",
        "新規登録は受け付けていません。管理者にアカウントを依頼してください。",
    ),
    (
        "delivery_failed",
        "コードを送信できませんでした。しばらくしてから再試行してください。",
    ),
    (
        "user_exists",
        "このユーザー名のアカウントは既に存在します。",
    ),
    (
        "email_exists",
        "このメールアドレスのアカウントは既に存在します。",
    ),
    (
        "same_password",
        "新しいパスワードは現在のパスワードと異なるものにしてください。",
    ),
    (
        "invalid_request",
        "このサインインのリンクは無効か期限切れです。アプリケーションに戻ってやり直してください。",
    ),
    (
        "unavailable",
        "サインインサービスは一時的に利用できません。もう一度お試しください。",
    ),
    (
        "busy",
        "サインインサービスが混み合っています。数秒後にもう一度お試しください。",
    ),
    ("err_missing", "{name}: 必須項目です。"),
    (
        "err_email",
        "{name}: 「{value}」は name@example.com のようなメールアドレスではありません。",
    ),
    (
        "err_phone",
        "{name}: 「{value}」は有効な電話番号ではありません。{international} の形式、または{region}の番号なら {national} の形式で入力してください。",
    ),
    (
        "err_date",
        "{name}: 「{value}」は 1990-04-23 のような YYYY-MM-DD 形式の日付ではありません。",
    ),
    (
        "err_url",
        "{name}: 「{value}」は https:// で始まるアドレスではありません。",
    ),
    ("err_long", "{name}: 長すぎるか、制御文字を含んでいます。"),
    ("err_unknown", "{name}: この属性は設定できません。"),
    ("err_username_empty", "username: 必須項目です。"),
    ("err_username_long", "username: 128文字を超えています。"),
    (
        "err_username_char",
        "username: 空白や制御文字は使えません。",
    ),
    (
        "err_username_reserved",
        "username: サインインプロバイダー名と「_」で始まる名前は、そのプロバイダーのユーザー用に予約されています。",
    ),
    (
        "err_password",
        "password: 次の条件を満たしていません: {rules}。",
    ),
    ("rule_min", "{n}文字以上"),
    ("rule_max", "256文字以下"),
    ("rule_lower", "小文字を含む"),
    ("rule_upper", "大文字を含む"),
    ("rule_digit", "数字を含む"),
    ("rule_symbol", "記号を含む"),
    ("mail_subject", "確認コード"),
    (
        "mail_body",
        "確認コードは {code} です。有効期限は{hours}時間です。\nお心当たりのない場合は、このメールを無視してください。",
    ),
    ("attr_email", "メールアドレス"),
    ("attr_phone_number", "電話番号"),
    ("attr_name", "氏名"),
    ("attr_given_name", "名"),
    ("attr_family_name", "姓"),
    ("attr_birthdate", "生年月日 (YYYY-MM-DD)"),
];

fn table(lang: Lang) -> &'static [(&'static str, &'static str)] {
    match lang {
        Lang::En => EN,
        Lang::Ja => JA,
    }
}

/// Tables owned by other areas of the pool, consulted after this one's.
fn more(lang: Lang) -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    let (federation, console, account) = match lang {
        Lang::En => (
            super::federation::texts::EN,
            super::console::texts::EN,
            super::account::texts::EN,
        ),
        Lang::Ja => (
            super::federation::texts::JA,
            super::console::texts::JA,
            super::account::texts::JA,
        ),
    };
    let flows = match lang {
        Lang::En => FLOWS_EN,
        Lang::Ja => FLOWS_JA,
    };
    federation
        .iter()
        .chain(console.iter())
        .chain(account.iter())
        .chain(flows.iter())
}

// Flows and form messages: where each flow ends, and problems shown next to their fields
// (the field's label names them, so the messages carry no name).
const FLOWS_EN: &[(&str, &str)] = &[
    ("fl_required", "Required."),
    (
        "fl_email",
        "“{value}” is not an email address like name@example.com.",
    ),
    (
        "fl_phone",
        "“{value}” is not a valid phone number. Enter it like {international}, or {national} for a number in {region}.",
    ),
    (
        "fl_date",
        "“{value}” is not a date in the form YYYY-MM-DD, like 1990-04-23.",
    ),
    (
        "fl_url",
        "“{value}” is not a web address starting with https://.",
    ),
    ("fl_long", "Too long, or contains control characters."),
    ("fl_unknown", "This cannot be set."),
    ("fl_username_long", "Longer than 128 characters."),
    (
        "fl_username_char",
        "May not contain spaces or control characters.",
    ),
    (
        "fl_username_reserved",
        "Names starting with a sign-in provider's name and “_” are reserved for that provider's users.",
    ),
    ("fl_password", "Does not meet these rules: {rules}."),
    ("fl_bad_current", "Incorrect current password."),
    ("fl_sep", ": "),
    ("fl_region_JP", "Japan"),
    ("fl_region_US", "the United States"),
    ("fl_region_GB", "the United Kingdom"),
    ("fl_continue_app", "Continue to the application"),
    ("fl_switch_account", "Switch account"),
    (
        "fl_signed_in_again",
        "You are signed in as {user}. Sign in again to continue.",
    ),
    ("fl_step_up_title", "Two-step verification needed"),
    (
        "fl_step_up_unavailable",
        "This page needs a sign-in with two-step verification, which this site does not offer. Ask your administrator.",
    ),
    (
        "fl_step_up_setup",
        "This page needs two-step verification. Set it up now to continue; it takes a minute.",
    ),
    ("fl_fed_conflict_title", "You already have an account"),
    ("fl_fed_cancel_title", "Sign-in cancelled"),
    (
        "fl_fed_error_title",
        "The sign-in provider did not sign you in",
    ),
    (
        "fl_fed_cancelled",
        "Signing in with your provider was cancelled ({code}). Sign in another way, or try again.",
    ),
];

const FLOWS_JA: &[(&str, &str)] = &[
    ("fl_required", "入力してください。"),
    (
        "fl_email",
        "「{value}」は name@example.com のようなメールアドレスではありません。",
    ),
    (
        "fl_phone",
        "「{value}」は有効な電話番号ではありません。{international} の形式、または{region}の番号なら {national} の形式で入力してください。",
    ),
    (
        "fl_date",
        "「{value}」は 1990-04-23 のような YYYY-MM-DD 形式の日付ではありません。",
    ),
    (
        "fl_url",
        "「{value}」は https:// で始まるアドレスではありません。",
    ),
    ("fl_long", "長すぎるか、制御文字を含んでいます。"),
    ("fl_unknown", "この項目は設定できません。"),
    ("fl_username_long", "128文字を超えています。"),
    ("fl_username_char", "空白や制御文字は使えません。"),
    (
        "fl_username_reserved",
        "サインインプロバイダー名と「_」で始まる名前は、そのプロバイダーのユーザー用に予約されています。",
    ),
    ("fl_password", "次の条件を満たしていません: {rules}。"),
    ("fl_bad_current", "現在のパスワードが正しくありません。"),
    ("fl_sep", "："),
    ("fl_region_JP", "日本"),
    ("fl_region_US", "アメリカ"),
    ("fl_region_GB", "イギリス"),
    ("fl_continue_app", "アプリケーションに進む"),
    ("fl_switch_account", "別のアカウントに切り替える"),
    (
        "fl_signed_in_again",
        "{user} としてサインインしています。続けるにはもう一度サインインしてください。",
    ),
    ("fl_step_up_title", "2段階認証が必要です"),
    (
        "fl_step_up_unavailable",
        "このページには2段階認証でのサインインが必要ですが、このサイトでは2段階認証を利用できません。管理者にお問い合わせください。",
    ),
    (
        "fl_step_up_setup",
        "このページには2段階認証が必要です。今すぐ設定して続けてください (1分ほどで終わります)。",
    ),
    ("fl_fed_conflict_title", "アカウントは既にあります"),
    ("fl_fed_cancel_title", "サインインをキャンセルしました"),
    (
        "fl_fed_error_title",
        "サインインプロバイダーでサインインできませんでした",
    ),
    (
        "fl_fed_cancelled",
        "プロバイダーでのサインインがキャンセルされました ({code})。別の方法でサインインするか、もう一度お試しください。",
    ),
];

/// One string; falls back to English, then to the key itself.
pub fn t(lang: Lang, key: &str) -> &'static str {
    table(lang)
        .iter()
        .chain(more(lang))
        .chain(EN.iter())
        .chain(more(Lang::En))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| {
            EN.iter()
                .find(|(k, _)| *k == "error_title")
                .map(|(_, v)| *v)
                .unwrap_or("error")
        })
}

/// The whole table, for templates.
pub fn all(lang: Lang) -> BTreeMap<&'static str, &'static str> {
    let mut m: BTreeMap<&str, &str> = EN.iter().chain(more(Lang::En)).copied().collect();
    m.extend(table(lang).iter().chain(more(lang)).copied());
    m
}

/// A duration in words with singular and plural right ("1 second", "2 minutes", "7 days";
/// 「1秒」「7日」): under a minute in seconds, under a day in minutes or hours, then in days
/// or hours. A duration that is not a whole number of the unit is rounded up, so a person
/// told to wait is never told too short a time.
pub fn duration_words(lang: Lang, secs: i64) -> String {
    let secs = secs.max(1);
    let ceil = |unit: i64| (secs + unit - 1) / unit;
    let (n, unit) = if secs < 60 {
        (secs, 0)
    } else if secs < 3600 || (secs < 2 * 3600 && secs % 3600 != 0) {
        (ceil(60), 1)
    } else if secs < 86_400 || secs % 86_400 != 0 {
        (ceil(3600), 2)
    } else {
        (secs / 86_400, 3)
    };
    match lang {
        Lang::Ja => format!("{n}{}", ["秒", "分", "時間", "日"][unit]),
        Lang::En => {
            let word = ["second", "minute", "hour", "day"][unit];
            format!("{n} {word}{}", if n == 1 { "" } else { "s" })
        }
    }
}

/// A moment as a person reads it, with the zone named: `2026-12-08 01:02 UTC`.
pub fn time_words(unix_secs: i64) -> String {
    let full = super::audit::rfc3339_us(unix_secs.saturating_mul(1_000_000));
    format!("{} {} UTC", &full[..10], &full[11..16])
}

/// Fills `{name}` placeholders.
pub fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut s = template.to_string();
    for (k, v) in vars {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

pub fn attribute_label(lang: Lang, name: &str) -> String {
    let key = format!("attr_{name}");
    if table(lang).iter().chain(EN.iter()).any(|(k, _)| *k == key) {
        t(lang, &key).to_string()
    } else {
        name.to_string()
    }
}

pub fn attribute_error(lang: Lang, e: &AttributeError) -> String {
    let name = e.name.as_str();
    match &e.problem {
        AttributeProblem::Missing => fill(t(lang, "err_missing"), &[("name", name)]),
        AttributeProblem::NotEmail { value } => {
            fill(t(lang, "err_email"), &[("name", name), ("value", value)])
        }
        AttributeProblem::NotPhone {
            value,
            international,
            national,
            region,
        } => fill(
            t(lang, "err_phone"),
            &[
                ("name", name),
                ("value", value),
                ("international", international),
                ("national", national),
                ("region", region),
            ],
        ),
        AttributeProblem::NotDate { value } => {
            fill(t(lang, "err_date"), &[("name", name), ("value", value)])
        }
        AttributeProblem::NotUrl { value } => {
            fill(t(lang, "err_url"), &[("name", name), ("value", value)])
        }
        AttributeProblem::TooLong => fill(t(lang, "err_long"), &[("name", name)]),
        AttributeProblem::Unknown => fill(t(lang, "err_unknown"), &[("name", name)]),
    }
}

pub fn password_error(lang: Lang, rules: &[Rule]) -> String {
    fill(
        t(lang, "err_password"),
        &[("rules", &rule_list(lang, rules))],
    )
}

/// The unmet password rules as one list in `lang`.
pub fn rule_list(lang: Lang, rules: &[Rule]) -> String {
    let sep = if lang == Lang::Ja { "、" } else { "; " };
    let list: Vec<String> = rules
        .iter()
        .map(|r| match r {
            Rule::MinLength(n) => fill(t(lang, "rule_min"), &[("n", &n.to_string())]),
            Rule::MaxLength => t(lang, "rule_max").to_string(),
            Rule::Lowercase => t(lang, "rule_lower").to_string(),
            Rule::Uppercase => t(lang, "rule_upper").to_string(),
            Rule::Digit => t(lang, "rule_digit").to_string(),
            Rule::Symbol => t(lang, "rule_symbol").to_string(),
        })
        .collect();
    list.join(sep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_beats_the_cookie_which_beats_accept_language_and_junk_is_ignored() {
        let h = |cookie: &str| {
            let mut m = http::HeaderMap::new();
            m.insert(http::header::ACCEPT_LANGUAGE, "ja".parse().unwrap());
            if !cookie.is_empty() {
                m.insert(http::header::COOKIE, cookie.parse().unwrap());
            }
            m
        };
        assert_eq!(Lang::of_request(&h(""), None), Lang::Ja);
        assert_eq!(
            Lang::of_request(&h("a=1; portcullis_lang=en"), None),
            Lang::En
        );
        assert_eq!(
            Lang::of_request(&h("portcullis_lang=en"), Some("lang=ja")),
            Lang::Ja
        );
        for junk in [
            "portcullis_lang=xx",
            "portcullis_lang=<script>",
            "portcullis_lang=EN-gb",
        ] {
            assert_eq!(
                Lang::of_request(&h(junk), Some("lang=de")),
                Lang::Ja,
                "{junk}"
            );
        }
        let links = switch_links("/oauth2/pool/login", Some("req=a%26b&lang=en"), Lang::En);
        assert_eq!(links[1].href, "/oauth2/pool/login?req=a%26b&lang=ja");
        assert!(links[0].current && !links[1].current);
    }

    #[test]
    fn durations_in_words_have_the_right_number() {
        let cases = [
            (1, "1 second", "1秒"),
            (2, "2 seconds", "2秒"),
            (59, "59 seconds", "59秒"),
            (60, "1 minute", "1分"),
            (61, "2 minutes", "2分"),
            (900, "15 minutes", "15分"),
            (3600, "1 hour", "1時間"),
            (5400, "90 minutes", "90分"),
            (7200, "2 hours", "2時間"),
            (86_400, "1 day", "1日"),
            (7 * 86_400, "7 days", "7日"),
            (90_000, "25 hours", "25時間"),
            (0, "1 second", "1秒"),
        ];
        for (s, en, ja) in cases {
            assert_eq!(duration_words(Lang::En, s), en, "{s}");
            assert_eq!(duration_words(Lang::Ja, s), ja, "{s}");
        }
        let msg = fill(
            t(Lang::En, "locked"),
            &[("s", &duration_words(Lang::En, 1))],
        );
        assert!(msg.ends_with("Try again in 1 second."), "{msg}");
    }

    #[test]
    fn times_name_their_zone() {
        assert_eq!(time_words(0), "1970-01-01 00:00 UTC");
        assert_eq!(time_words(1_796_691_720), "2026-12-08 01:02 UTC");
        assert_eq!(time_words(951_782_400), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn negotiates_by_q_value() {
        let table = [
            (None, Lang::En),
            (Some("ja"), Lang::Ja),
            (Some("ja-JP,ja;q=0.9,en-US;q=0.8,en;q=0.7"), Lang::Ja),
            (Some("en-US,en;q=0.9,ja;q=0.8"), Lang::En),
            (Some("fr-FR,ja;q=0.5,en;q=0.4"), Lang::Ja),
            (Some("fr"), Lang::En),
            (Some("ja;q=0"), Lang::En),
        ];
        for (h, want) in table {
            assert_eq!(Lang::negotiate(h), want, "{h:?}");
        }
    }

    #[test]
    fn every_attribute_problem_has_a_message_naming_the_attribute() {
        let problems = [
            AttributeProblem::Missing,
            AttributeProblem::NotEmail { value: "x".into() },
            AttributeProblem::NotPhone {
                value: "1".into(),
                international: "+1 201 555 0123".into(),
                national: "(201) 555-0123".into(),
                region: "US".into(),
            },
            AttributeProblem::NotDate { value: "x".into() },
            AttributeProblem::NotUrl { value: "x".into() },
            AttributeProblem::TooLong,
            AttributeProblem::Unknown,
        ];
        for lang in [Lang::En, Lang::Ja] {
            for p in &problems {
                let e = AttributeError {
                    name: "custom:team".into(),
                    problem: p.clone(),
                };
                let m = attribute_error(lang, &e);
                assert!(
                    m.starts_with("custom:team: ") && !m.contains('{'),
                    "{lang:?} {p:?}: {m}"
                );
            }
            let m = password_error(lang, &[Rule::MinLength(12), Rule::Symbol]);
            assert!(m.contains("12") && !m.contains('{'), "{m}");
        }
    }

    #[test]
    fn every_japanese_key_exists_in_english() {
        for (k, _) in JA {
            assert!(EN.iter().any(|(e, _)| e == k), "{k}");
        }
        for (k, _) in EN {
            assert!(JA.iter().any(|(j, _)| j == k), "missing Japanese for {k}");
        }
        let (more_en, more_ja): (Vec<_>, Vec<_>) =
            (more(Lang::En).collect(), more(Lang::Ja).collect());
        for (k, _) in &more_en {
            assert!(
                more_ja.iter().any(|(j, _)| j == k),
                "missing Japanese for {k}"
            );
            assert!(!EN.iter().any(|(e, _)| e == k), "{k} is defined twice");
        }
        for (k, _) in &more_ja {
            assert!(more_en.iter().any(|(e, _)| e == k), "{k}");
        }
    }
}
