//! Key bindings as data: one table of (action, keys, help line) drives the dispatch in
//! `update`, the help popup and the README's key table (a test checks the README against it),
//! and a user file can rebind any action (as gitui's `key_list.rs`).
//!
//! Why a table: the bindings were a `match` in `update.rs`, a list of strings in `view.rs`
//! and a table in the README, kept in step by hand; a user on a keyboard layout where `/` or
//! `?` needs a chord could not change them at all.
//!
//! The user file is TOML, `action = ["key", ...]` per line, read from `--keys FILE`, else
//! `$XDG_CONFIG_HOME/camscope/keys.toml` (or `~/.config/camscope/keys.toml`) when it exists.
//! An action it names gets exactly those keys; the others keep theirs. Ctrl-C always quits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What a key does in the inspector's main view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Up,
    Down,
    FocusFiles,
    FocusClasses,
    ToggleFocus,
    PageUp,
    PageDown,
    First,
    Last,
    Search,
    NextMethod,
    PrevMethod,
    Layers,
    View,
    Compare,
    Summary,
    Filter,
    SortNext,
    SortPrev,
    NextMistake,
    PrevMistake,
    Colormap,
    AlphaUp,
    AlphaDown,
    Score,
    Save,
    Help,
    Quit,
}

/// One row of the default table: the action, its name in the user file, its keys, its help.
pub struct Default {
    pub action: Action,
    pub name: &'static str,
    pub keys: &'static [&'static str],
    pub help: &'static str,
}

const fn row(action: Action, name: &'static str, keys: &'static [&'static str], help: &'static str) -> Default {
    Default { action, name, keys, help }
}

/// The bindings camscope ships, in the order the help and the README show them.
pub const DEFAULTS: &[Default] = &[
    row(Action::Up, "up", &["Up", "k"], "move up in the focused list: images, or the target class"),
    row(Action::Down, "down", &["Down", "j"], "move down in the focused list (the heatmap follows at once)"),
    row(Action::FocusFiles, "focus_files", &["Left", "h"], "focus the files pane"),
    row(Action::FocusClasses, "focus_classes", &["Right", "l"], "focus the classes pane"),
    row(
        Action::ToggleFocus,
        "toggle_focus",
        &["Tab", "BackTab", "Enter", "Space"],
        "toggle focus between files and classes",
    ),
    row(Action::PageUp, "page_up", &["PgUp"], "page up"),
    row(Action::PageDown, "page_down", &["PgDn"], "page down"),
    row(Action::First, "first", &["Home", "g"], "first item"),
    row(Action::Last, "last", &["End", "G"], "last item"),
    row(
        Action::Search,
        "search",
        &["/"],
        "search all classes by name or index; Enter targets it (even outside the top-k)",
    ),
    row(Action::NextMethod, "next_method", &["m"], "next method"),
    row(Action::PrevMethod, "prev_method", &["M"], "previous method"),
    row(Action::Layers, "layers", &["L"], "layer picker (candidate layers with shapes)"),
    row(
        Action::View,
        "view",
        &["v"],
        "view: overlay, heatmap, original, original | overlay (| compare, for a mistake)",
    ),
    row(Action::Compare, "compare", &["x"], "compare a mistake: predicted | true | predicted − true (again: back)"),
    row(
        Action::Summary,
        "summary",
        &["t"],
        "triage summary: accuracy, confusions; Enter filters or selects, Esc closes",
    ),
    row(Action::Filter, "filter", &["f"], "filter the files: all, mistakes (misclassified), correct"),
    row(Action::SortNext, "sort_next", &["o"], "sort the files: name, confidence of the mistake, margin, loss"),
    row(Action::SortPrev, "sort_prev", &["O"], "sort the files, the other way round the cycle"),
    row(Action::NextMistake, "next_mistake", &["n"], "next misclassified image (wraps)"),
    row(Action::PrevMistake, "prev_mistake", &["N"], "previous misclassified image (wraps)"),
    row(Action::Colormap, "colormap", &["c"], "next colormap"),
    row(Action::AlphaUp, "alpha_up", &["+", "="], "overlay alpha up"),
    row(Action::AlphaDown, "alpha_down", &["-", "_"], "overlay alpha down"),
    row(Action::Score, "score", &["p"], "score: logit / probability"),
    row(Action::Save, "save", &["s"], "save the overlay as PNG (path in the status bar; never overwrites)"),
    row(Action::Help, "help", &["?"], "this help (any key closes it)"),
    row(Action::Quit, "quit", &["q", "Esc"], "quit (Ctrl-C always quits)"),
];

/// The help's last line: not a key, but part of the same table for the reader.
pub const MOUSE_HELP: (&str, &str) = ("mouse", "click a file or class to select it; wheel scrolls");

/// A key with its modifiers (Shift only matters for keys that are not characters: a
/// character already says whether it is upper case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    code: KeyCode,
    ctrl: bool,
    alt: bool,
}

impl Key {
    /// Parse `a`, `G`, `?`, `Space`, `Enter`, `Esc`, `Tab`, `BackTab`, `Up`, `Down`, `Left`,
    /// `Right`, `PgUp`, `PgDn`, `Home`, `End`, `Backspace`, `Delete`, `F1`..`F12`, with
    /// `Ctrl-` and `Alt-` prefixes.
    pub fn parse(s: &str) -> Option<Key> {
        let (mut ctrl, mut alt, mut rest) = (false, false, s);
        loop {
            if let Some(r) = rest.strip_prefix("Ctrl-").filter(|r| !r.is_empty()) {
                (ctrl, rest) = (true, r);
            } else if let Some(r) = rest.strip_prefix("Alt-").filter(|r| !r.is_empty()) {
                (alt, rest) = (true, r);
            } else {
                break;
            }
        }
        let code = match rest {
            "Space" => KeyCode::Char(' '),
            "Enter" => KeyCode::Enter,
            "Esc" => KeyCode::Esc,
            "Tab" => KeyCode::Tab,
            "BackTab" => KeyCode::BackTab,
            "Up" => KeyCode::Up,
            "Down" => KeyCode::Down,
            "Left" => KeyCode::Left,
            "Right" => KeyCode::Right,
            "PgUp" => KeyCode::PageUp,
            "PgDn" => KeyCode::PageDown,
            "Home" => KeyCode::Home,
            "End" => KeyCode::End,
            "Backspace" => KeyCode::Backspace,
            "Delete" => KeyCode::Delete,
            f if f.len() >= 2 && f.starts_with('F') && f[1..].parse::<u8>().is_ok_and(|n| (1..=12).contains(&n)) => {
                KeyCode::F(f[1..].parse().ok()?)
            }
            c if c.chars().count() == 1 => KeyCode::Char(c.chars().next()?),
            _ => return None,
        };
        Some(Key { code, ctrl, alt })
    }

    fn matches(&self, k: &KeyEvent) -> bool {
        self.code == k.code
            && self.ctrl == k.modifiers.contains(KeyModifiers::CONTROL)
            && self.alt == k.modifiers.contains(KeyModifiers::ALT)
    }

    /// How the help shows the key.
    pub fn label(&self) -> String {
        let base = match self.code {
            KeyCode::Up => "↑".to_owned(),
            KeyCode::Down => "↓".to_owned(),
            KeyCode::Left => "←".to_owned(),
            KeyCode::Right => "→".to_owned(),
            KeyCode::PageUp => "PgUp".to_owned(),
            KeyCode::PageDown => "PgDn".to_owned(),
            KeyCode::Char(' ') => "Space".to_owned(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::BackTab => "BackTab".to_owned(),
            KeyCode::F(n) => format!("F{n}"),
            other => format!("{other:?}"),
        };
        format!("{}{}{base}", if self.ctrl { "Ctrl-" } else { "" }, if self.alt { "Alt-" } else { "" })
    }
}

/// Why a key file cannot be used (the inspector refuses to start: a half-applied file would
/// leave the user guessing which keys work).
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("{}: cannot read the key bindings: {source}; fix the file or pass another --keys", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: not valid key bindings ({detail}); write one `action = [\"key\", ...]` per line, e.g. `save = [\"s\", \"Ctrl-s\"]`", path.display())]
    Syntax { path: PathBuf, detail: String },
    #[error("{}: unknown action `{name}`; the actions are: {}", path.display(), DEFAULTS.iter().map(|d| d.name).collect::<Vec<_>>().join(", "))]
    UnknownAction { path: PathBuf, name: String },
    #[error("{}: `{key}` (for {action}) is not a key; use a character, or Space, Enter, Esc, Tab, BackTab, Up, Down, Left, Right, PgUp, PgDn, Home, End, Backspace, Delete, F1-F12, with Ctrl- or Alt- before it", path.display())]
    BadKey { path: PathBuf, action: String, key: String },
    #[error("{}: `{key}` is bound to both {first} and {second}; give one of them another key", path.display())]
    Conflict { path: PathBuf, key: String, first: String, second: String },
}

/// The bindings in force.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyList {
    bindings: Vec<(Action, Vec<Key>)>,
}

impl std::default::Default for KeyList {
    fn default() -> Self {
        Self {
            bindings: DEFAULTS
                .iter()
                .map(|d| (d.action, d.keys.iter().map(|k| Key::parse(k).expect("default keys parse")).collect()))
                .collect(),
        }
    }
}

impl KeyList {
    /// The defaults with the user's file over them: `explicit` (`--keys`) must exist; the
    /// default location is used when it does.
    pub fn load(explicit: Option<&Path>) -> Result<Self, KeysError> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => match default_path().filter(|p| p.is_file()) {
                Some(p) => p,
                None => return Ok(Self::default()),
            },
        };
        let bytes =
            crate::fsutil::read_regular(&path).map_err(|source| KeysError::Read { path: path.clone(), source })?;
        let text = String::from_utf8_lossy(&bytes);
        Self::from_toml(&text, &path)
    }

    /// The defaults with the bindings of `text` (a key file's contents) over them.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, KeysError> {
        let table: BTreeMap<String, Vec<String>> = toml::from_str(text).map_err(|e| KeysError::Syntax {
            path: path.to_owned(),
            detail: crate::engine::first_line(&e.to_string()),
        })?;
        let mut list = Self::default();
        for (name, keys) in &table {
            let d = DEFAULTS
                .iter()
                .find(|d| d.name == name)
                .ok_or_else(|| KeysError::UnknownAction { path: path.to_owned(), name: name.clone() })?;
            let parsed = keys
                .iter()
                .map(|k| {
                    Key::parse(k).ok_or_else(|| KeysError::BadKey {
                        path: path.to_owned(),
                        action: name.clone(),
                        key: k.clone(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let slot = list.bindings.iter_mut().find(|(a, _)| *a == d.action).expect("every action has a row");
            slot.1 = parsed;
        }
        // One key, one action.
        for (i, (a, keys)) in list.bindings.iter().enumerate() {
            for k in keys {
                if let Some((b, _)) = list.bindings[i + 1..].iter().find(|(_, ks)| ks.contains(k)) {
                    return Err(KeysError::Conflict {
                        path: path.to_owned(),
                        key: k.label(),
                        first: name_of(*a).to_owned(),
                        second: name_of(*b).to_owned(),
                    });
                }
            }
        }
        Ok(list)
    }

    /// The action bound to a key press, if any.
    pub fn action(&self, k: &KeyEvent) -> Option<Action> {
        self.bindings.iter().find(|(_, keys)| keys.iter().any(|key| key.matches(k))).map(|(a, _)| *a)
    }

    /// The keys of an action, as the help shows them (`↑ k`).
    pub fn label(&self, action: Action) -> String {
        let keys = self.bindings.iter().find(|(a, _)| *a == action).map(|(_, k)| k.as_slice()).unwrap_or(&[]);
        if keys.is_empty() { "(unbound)".to_owned() } else { keys.iter().map(Key::label).collect::<Vec<_>>().join(" ") }
    }

    /// (keys, help) rows for the help popup, in the table's order, the mouse last.
    pub fn help_rows(&self) -> Vec<(String, &'static str)> {
        DEFAULTS
            .iter()
            .map(|d| (self.label(d.action), d.help))
            .chain(std::iter::once((MOUSE_HELP.0.to_owned(), MOUSE_HELP.1)))
            .collect()
    }

    /// The README's key table (Markdown), generated from the defaults.
    pub fn readme_table() -> String {
        let list = Self::default();
        let mut out = String::from("| Keys | Action (name in a key file) | What it does |\n| --- | --- | --- |\n");
        for d in DEFAULTS {
            out += &format!("| `{}` | `{}` | {} |\n", list.label(d.action), d.name, d.help.replace('|', "\\|"));
        }
        out += &format!("| {} | | {} |\n", MOUSE_HELP.0, MOUSE_HELP.1);
        out
    }
}

fn name_of(a: Action) -> &'static str {
    DEFAULTS.iter().find(|d| d.action == a).map_or("?", |d| d.name)
}

/// `$XDG_CONFIG_HOME/camscope/keys.toml`, else `~/.config/camscope/keys.toml`.
pub fn default_path() -> Option<PathBuf> {
    let set = |n: &str| std::env::var_os(n).filter(|v| !v.is_empty()).map(PathBuf::from);
    set("XDG_CONFIG_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| set("HOME").map(|h| h.join(".config")))
        .map(|d| d.join("camscope").join("keys.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn the_defaults_dispatch_and_have_one_action_per_key() {
        let k = KeyList::default();
        assert_eq!(k.action(&press(KeyCode::Char('j'), KeyModifiers::NONE)), Some(Action::Down));
        // An upper-case letter arrives with Shift: the character already says so.
        assert_eq!(k.action(&press(KeyCode::Char('G'), KeyModifiers::SHIFT)), Some(Action::Last));
        assert_eq!(k.action(&press(KeyCode::Esc, KeyModifiers::NONE)), Some(Action::Quit));
        assert_eq!(k.action(&press(KeyCode::Char('s'), KeyModifiers::CONTROL)), None);
        assert_eq!(k.action(&press(KeyCode::Char('z'), KeyModifiers::NONE)), None);
        assert_eq!(KeyList::from_toml("", Path::new("k.toml")).unwrap(), k);
        assert_eq!(k.label(Action::Up), "↑ k");
    }

    #[test]
    fn a_user_file_rebinds_and_its_mistakes_are_one_line_each() {
        let p = Path::new("keys.toml");
        let k = KeyList::from_toml("save = [\"Ctrl-s\", \"F2\"]\nsearch = [\"Alt-f\"]\n", p).unwrap();
        assert_eq!(k.action(&press(KeyCode::Char('s'), KeyModifiers::CONTROL)), Some(Action::Save));
        assert_eq!(k.action(&press(KeyCode::F(2), KeyModifiers::NONE)), Some(Action::Save));
        assert_eq!(k.action(&press(KeyCode::Char('s'), KeyModifiers::NONE)), None, "replaced, not added");
        assert_eq!(k.action(&press(KeyCode::Char('f'), KeyModifiers::ALT)), Some(Action::Search));
        assert_eq!(k.action(&press(KeyCode::Char('/'), KeyModifiers::NONE)), None);
        assert_eq!(k.label(Action::Save), "Ctrl-s F2");

        let err = |t: &str| KeyList::from_toml(t, p).unwrap_err().to_string();
        let e = err("sav = [\"s\"]");
        assert!(e.contains("unknown action `sav`") && e.contains("save"), "{e}");
        let e = err("save = [\"Ctrl-\"]");
        assert!(e.contains("`Ctrl-` (for save) is not a key"), "{e}");
        let e = err("save = [\"j\"]");
        assert!(e.contains("`j` is bound to both down and save"), "{e}");
        let e = err("save = \"s\"");
        assert!(e.starts_with("keys.toml: not valid key bindings"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn every_key_name_parses_and_reads_back() {
        for name in [
            "a",
            "?",
            "Space",
            "Enter",
            "Esc",
            "Tab",
            "BackTab",
            "PgUp",
            "PgDn",
            "Home",
            "End",
            "F12",
            "Ctrl-x",
            "Alt-Ctrl-x",
        ] {
            assert!(Key::parse(name).is_some(), "{name}");
        }
        for bad in ["", "Ctrl-", "F13", "F0", "ab", "Shift-a"] {
            assert!(Key::parse(bad).is_none(), "{bad}");
        }
    }
}
