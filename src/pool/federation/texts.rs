//! Federation's strings, in the hosted pages' languages (consulted by `pool::i18n`).

pub const EN: &[(&str, &str)] = &[
    ("continue_with", "Continue with {name}"),
    ("or", "or"),
    ("fed_unknown_provider", "There is no such sign-in provider."),
    (
        "fed_idp_unavailable",
        "The sign-in provider could not be reached or sent an answer that could not be trusted. Please try again.",
    ),
    (
        "fed_idp_error",
        "The sign-in provider did not sign you in (error: {code}).",
    ),
    (
        "fed_expired",
        "This sign-in has expired or was not started in this browser. Please start again.",
    ),
    (
        "fed_email_exists",
        "An account with this email address already exists. Sign in with your user name and password.",
    ),
    (
        "fed_account_not_ready",
        "This account must first be set up with its password. Sign in with your user name and password.",
    ),
    ("fed_complete_title", "Complete your profile"),
    (
        "fed_complete_help",
        "A few details are needed that your sign-in provider did not share.",
    ),
    ("fed_signed_in_with", "Signing in with"),
];

pub const JA: &[(&str, &str)] = &[
    ("continue_with", "{name} で続ける"),
    ("or", "または"),
    (
        "fed_unknown_provider",
        "そのサインインプロバイダーはありません。",
    ),
    (
        "fed_idp_unavailable",
        "サインインプロバイダーに接続できないか、信頼できない応答が返されました。もう一度お試しください。",
    ),
    (
        "fed_idp_error",
        "サインインプロバイダーでサインインできませんでした (エラー: {code})。",
    ),
    (
        "fed_expired",
        "このサインインは期限切れか、このブラウザーで開始されたものではありません。最初からやり直してください。",
    ),
    (
        "fed_email_exists",
        "このメールアドレスのアカウントは既にあります。ユーザー名とパスワードでサインインしてください。",
    ),
    (
        "fed_account_not_ready",
        "このアカウントは先にパスワードで設定を済ませる必要があります。ユーザー名とパスワードでサインインしてください。",
    ),
    ("fed_complete_title", "プロフィールの入力"),
    (
        "fed_complete_help",
        "サインインプロバイダーから提供されなかった情報を入力してください。",
    ),
    ("fed_signed_in_with", "サインイン方法"),
];
