//! The console's words, from data files (`words/<language>.toml`, compiled in), like the NDR
//! texts: a translator reads and changes the files, never the code. Every language has every
//! key (a unit test checks it, and that every key the code asks for exists).

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The console's languages; English is the fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Es,
}

const FILES: &[(Lang, &str)] = &[
    (Lang::En, include_str!("../words/en.toml")),
    (Lang::Es, include_str!("../words/es.toml")),
];

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Es => "es",
        }
    }

    pub fn parse(code: &str) -> Option<Lang> {
        let primary = code.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Lang::En),
            "es" => Some(Lang::Es),
            _ => None,
        }
    }

    /// The first language of an `Accept-Language` header we have, by its q-values.
    pub fn from_accept(header: &str) -> Option<Lang> {
        let mut offers: Vec<(f32, Lang)> = header
            .split(',')
            .take(20)
            .filter_map(|part| {
                let mut it = part.split(';');
                let lang = Lang::parse(it.next()?)?;
                let q = it
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .and_then(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                Some((q, lang))
            })
            .collect();
        offers.sort_by(|a, b| b.0.total_cmp(&a.0));
        offers.first().map(|(_, l)| *l)
    }

    pub fn words(self) -> &'static Words {
        static ALL: OnceLock<Vec<(Lang, Words)>> = OnceLock::new();
        let all = ALL.get_or_init(|| {
            FILES
                .iter()
                .map(|(l, text)| {
                    let map: BTreeMap<String, String> = toml::from_str(text).unwrap_or_else(|e| {
                        // Compiled in and checked by the unit tests: a broken file is a
                        // defect of the build, never of the input.
                        tracing::error!(language = l.code(), error = %e, "console words file does not parse");
                        BTreeMap::new()
                    });
                    (*l, Words { map })
                })
                .collect()
        });
        all.iter()
            .find(|(l, _)| *l == self)
            .or_else(|| all.first())
            .map(|(_, w)| w)
            .unwrap_or_else(|| empty())
    }
}

fn empty() -> &'static Words {
    static EMPTY: OnceLock<Words> = OnceLock::new();
    EMPTY.get_or_init(|| Words {
        map: BTreeMap::new(),
    })
}

pub struct Words {
    map: BTreeMap<String, String>,
}

impl Words {
    /// The text of `key`; the key itself where a file lacks it (the unit tests keep that from
    /// shipping).
    pub fn t<'a>(&'a self, key: &'a str) -> &'a str {
        self.map.get(key).map_or(key, String::as_str)
    }

    /// The text of `key` with `{name}` placeholders filled.
    pub fn f(&self, key: &str, args: &[(&str, &str)]) -> String {
        let mut s = self.t(key).to_string();
        for (k, v) in args {
            s = s.replace(&format!("{{{k}}}"), v);
        }
        s
    }

    /// The text of `key` if the file has it (for keys made from data, such as a reason).
    pub fn opt(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(l: Lang) -> Vec<String> {
        let map: BTreeMap<String, String> =
            toml::from_str(FILES.iter().find(|(x, _)| *x == l).map_or("", |f| f.1))
                .expect("words file parses");
        map.into_keys().collect()
    }

    #[test]
    fn every_language_has_every_key() {
        let en = keys(Lang::En);
        assert!(en.len() > 50, "{}", en.len());
        assert_eq!(
            keys(Lang::Es),
            en,
            "es.toml and en.toml must hold the same keys"
        );
    }

    /// Every `w.t("…")`, `w.f("…"` in the code names a key the files have.
    #[test]
    fn every_key_the_code_asks_for_exists() {
        let en = keys(Lang::En);
        let sources = [
            include_str!("page.rs"),
            include_str!("signin.rs"),
            include_str!("tenant.rs"),
            include_str!("support.rs"),
            include_str!("viewer.rs"),
            include_str!("traffic.rs"),
            include_str!("trace.rs"),
            include_str!("limits.rs"),
            include_str!("account.rs"),
            include_str!("records.rs"),
            include_str!("access.rs"),
            include_str!("queue.rs"),
            include_str!("user.rs"),
            include_str!("restriction.rs"),
            include_str!("domain_check.rs"),
        ];
        let mut missing = Vec::new();
        for src in sources {
            for pat in [".t(\"", ".f(\""] {
                for (i, _) in src.match_indices(pat) {
                    let rest = &src[i + pat.len()..];
                    let key = &rest[..rest.find('"').unwrap_or(0)];
                    if !en.iter().any(|k| k == key) {
                        missing.push(key.to_string());
                    }
                }
            }
        }
        assert!(missing.is_empty(), "keys missing from en.toml: {missing:?}");
    }

    /// Every evidence sentence the guard and the control plane write has its words.
    #[test]
    fn every_evidence_sentence_has_its_words() {
        let en = keys(Lang::En);
        for (key, _) in relayward_guard::note::ENGLISH {
            assert!(
                en.contains(&format!("ev_{key}")),
                "ev_{key} missing from en.toml"
            );
        }
    }

    #[test]
    fn accept_language_picks_the_best_offer_we_have() {
        assert_eq!(Lang::from_accept("es-MX,es;q=0.9,en;q=0.8"), Some(Lang::Es));
        assert_eq!(Lang::from_accept("fr, en;q=0.5, es;q=0.7"), Some(Lang::Es));
        assert_eq!(Lang::from_accept("fr, de"), None);
        assert_eq!(Lang::from_accept(""), None);
    }
}
