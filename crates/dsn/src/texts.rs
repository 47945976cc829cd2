//! The words of a report, from data files (`texts/<language>.toml`, compiled in): the headings,
//! and for each status code what happened, who must act and the steps to fix it. A reviewer
//! reads and changes the files, not the code; a new language is one more file and one more line
//! in `LANGUAGES`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

/// (code, file). The first is the fallback for a language nobody wrote.
const LANGUAGES: &[(&str, &str)] = &[
    ("en", include_str!("../texts/en.toml")),
    ("es", include_str!("../texts/es.toml")),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Texts {
    pub subject: String,
    pub title: String,
    pub intro_one: String,
    pub intro_many: String,
    pub what_happened: String,
    pub who_must_act: String,
    pub how_to_fix: String,
    pub details: String,
    pub hops: String,
    pub no_hops: String,
    pub status: String,
    pub reply: String,
    pub reporting_server: String,
    pub remote_server: String,
    pub time: String,
    pub message_id: String,
    pub original_below: String,
    pub delay_subject: String,
    pub delay_title: String,
    pub delay_intro: String,
    pub delay_more: String,
    pub success_subject: String,
    pub success_title: String,
    pub success_intro: String,
    pub who: Who,
    pub codes: BTreeMap<String, CodeText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Who {
    pub sender: String,
    pub sender_admin: String,
    pub recipient_side: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeText {
    /// `sender`, `sender_admin` or `recipient_side`.
    pub who: String,
    pub what: String,
    pub steps: Vec<String>,
}

impl Texts {
    pub fn who(&self, key: &str) -> &str {
        match key {
            "sender" => &self.who.sender,
            "recipient_side" => &self.who.recipient_side,
            _ => &self.who.sender_admin,
        }
    }

    /// The text for a status code: its own, or the one for its kind of failure, or the default.
    pub fn code(&self, status: &str) -> &CodeText {
        let fallback = match status {
            "4.4.7" => "5.4.7",
            "5.4.4" | "5.1.3" => "5.1.2",
            "5.7.0" | "5.7.25" | "5.7.26" | "5.7.27" | "5.7.28" | "5.7.23" => "5.7.1",
            "5.2.0" | "5.2.1" => "5.1.1",
            "5.2.3" => "5.3.4",
            _ => "default",
        };
        self.codes
            .get(status)
            .or_else(|| self.codes.get(fallback))
            .or_else(|| self.codes.get("default"))
            .unwrap_or(&DEFAULT_CODE)
    }
}

static DEFAULT_CODE: CodeText = CodeText {
    who: String::new(),
    what: String::new(),
    steps: Vec::new(),
};

fn all() -> &'static Vec<(&'static str, Texts)> {
    static ALL: OnceLock<Vec<(&'static str, Texts)>> = OnceLock::new();
    ALL.get_or_init(|| {
        LANGUAGES
            .iter()
            .filter_map(|(code, file)| match toml::from_str::<Texts>(file) {
                Ok(t) => Some((*code, t)),
                Err(e) => {
                    // A broken file is caught by `every_language_file_parses_and_has_every_code`;
                    // at run time the report falls back to another language.
                    tracing::error!(language = code, error = %e, "NDR texts do not parse");
                    None
                }
            })
            .collect()
    })
}

/// The texts for a language (`es`, `es-MX`), English when there are none for it.
pub fn texts(language: &str) -> Option<&'static Texts> {
    let base = language.split(['-', '_']).next().unwrap_or("en");
    let all = all();
    all.iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(base))
        .or_else(|| all.first())
        .map(|(_, t)| t)
}

/// The languages with texts.
pub fn languages() -> Vec<&'static str> {
    LANGUAGES.iter().map(|(c, _)| *c).collect()
}

/// Replaces `{name}` with its value.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The status codes the relay writes reports for (SPEC sections 3 and 7).
    pub const CODES: &[&str] = &[
        "5.7.750", "5.7.705", "5.7.711", "5.1.8", "5.1.90", "5.7.520", "5.7.64", "5.7.60", "5.4.7",
        "5.1.1", "5.2.2", "5.3.4", "5.7.1", "5.1.2", "5.1.10",
    ];

    #[test]
    fn every_language_file_parses_and_has_every_code() {
        for (code, file) in LANGUAGES {
            let t: Texts = toml::from_str(file).unwrap_or_else(|e| panic!("{code}: {e}"));
            for c in CODES.iter().chain(&["default"]) {
                let text = t
                    .codes
                    .get(*c)
                    .unwrap_or_else(|| panic!("{code} lacks {c}"));
                assert!(
                    !text.what.is_empty() && !text.steps.is_empty(),
                    "{code} {c}"
                );
                assert!(
                    ["sender", "sender_admin", "recipient_side"].contains(&text.who.as_str()),
                    "{code} {c}: who = {}",
                    text.who
                );
            }
        }
    }

    #[test]
    fn languages_fall_back_to_english_and_codes_to_their_kind() {
        let es = texts("es-ES").expect("es");
        assert_eq!(es.title, "No se pudo entregar su mensaje");
        let xx = texts("xx").expect("fallback");
        assert_eq!(xx.title, "Your message couldn't be delivered");
        assert_eq!(xx.code("4.4.7").what, xx.code("5.4.7").what);
        assert_eq!(xx.code("5.9.99").what, xx.codes["default"].what);
    }
}
