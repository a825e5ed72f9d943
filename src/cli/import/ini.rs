//! A reader for the ini files GearmanManager loads with PHP's `parse_ini_file($file, true)`
//! (`INI_SCANNER_NORMAL`), read as PHP 8 reads them, so that the import sees exactly what
//! GearmanManager saw. `tests/integration/import.rs` runs the same texts through PHP itself
//! and compares.
//!
//! What it follows: `[section]` headers at the start of a line (a later section of the same
//! name replaces the earlier one, text after `]` is ignored); `key = value` with the key
//! trimmed; `;` comments (`#` is not a comment since PHP 7: `# a = b` is the key `# a`); a
//! line with no `=` is ignored; values made of unquoted text (trimmed; inner spaces kept),
//! `"double-quoted"` strings (`\"` and `\\` are escapes, newlines allowed) and `'raw'` parts,
//! joined; `${NAME}` from the environment; the unquoted words `true`/`on`/`yes` read as
//! `"1"`, `false`/`off`/`no`/`none`/`null` as `""`; `key[] = v` and `key[k] = v` as arrays.
//!
//! Where PHP would do something a config cannot mean, it is an error here instead: an
//! unquoted value with an expression operator (`| & ~ ! ( ) ^`, which PHP evaluates as
//! bits of numbers, so `a|b` gives `0`) or `=`, and PHP constant names (`E_ALL`), which are
//! read as the text they are.

use std::fmt;

/// A parsed ini file: the keys before the first section, then the sections in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ini {
    pub top: Vec<Entry>,
    pub sections: Vec<Section>,
    /// Lines PHP reads without complaint but that mean nothing (a line with no `=`, a
    /// section given twice), for the caller to report: (line, what).
    pub notes: Vec<(usize, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// As written between the brackets (PHP keeps its spaces).
    pub name: String,
    /// The line of its header.
    pub line: usize,
    pub entries: Vec<Entry>,
}

impl Section {
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Value,
    /// The line it was (last) set on.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    /// `key[] = v` / `key[k] = v`: (key, value) in order; `[]` takes the next whole number.
    Array(Vec<(String, String)>),
}

/// Text that PHP would refuse (or read as something else than it says): where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Words PHP's ini scanner reads as booleans or null, in any case.
const TRUE_WORDS: [&str; 3] = ["true", "on", "yes"];
const FALSE_WORDS: [&str; 5] = ["false", "off", "no", "none", "null"];
/// Characters PHP reads as expression operators in an unquoted value or key.
const OPERATORS: [char; 9] = ['|', '&', '~', '!', '(', ')', '^', '{', '}'];

fn keyword(word: &str) -> Option<&'static str> {
    let lower = word.to_ascii_lowercase();
    if TRUE_WORDS.contains(&lower.as_str()) {
        Some("1")
    } else if FALSE_WORDS.contains(&lower.as_str()) {
        Some("")
    } else {
        None
    }
}

/// Parses ini text; `env` looks up `${NAME}` (the process environment in use).
pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Ini, SyntaxError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // PHP ends a line at \n, \r\n or a lone \r.
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut parser = Parser {
        chars: text.chars().collect(),
        pos: 0,
        line: 1,
        env,
    };
    let mut ini = Ini::default();
    let mut current: Option<usize> = None;
    while let Some(c) = parser.peek() {
        let line = parser.line;
        if parser.blank_or_comment_line() {
            continue;
        }
        match c {
            '[' => {
                let name = parser.section_header()?;
                let section = Section {
                    name: name.clone(),
                    line,
                    entries: Vec::new(),
                };
                match ini.sections.iter().position(|s| s.name == name) {
                    Some(i) => {
                        ini.notes.push((
                            line,
                            format!(
                                "section [{name}] again (first on line {}): PHP keeps only this one, so the keys of the first are lost",
                                ini.sections[i].line
                            ),
                        ));
                        ini.sections[i] = section;
                        current = Some(i);
                    }
                    None => {
                        ini.sections.push(section);
                        current = Some(ini.sections.len() - 1);
                    }
                }
            }
            _ => {
                let Some((key, index, value)) = parser.assignment()? else {
                    ini.notes
                        .push((line, "a line without '=': PHP ignores it".to_string()));
                    continue;
                };
                let entries = match current {
                    Some(i) => &mut ini.sections[i].entries,
                    None => &mut ini.top,
                };
                set(entries, key, index, value, line);
            }
        }
    }
    Ok(ini)
}

/// PHP's assignment: a plain key replaces; `key[]` appends to an array (replacing a plain
/// value), `key[k]` sets one element.
fn set(entries: &mut Vec<Entry>, key: String, index: Option<String>, value: String, line: usize) {
    let slot = entries.iter().position(|e| e.key == key);
    let new = match index {
        None => Value::Text(value),
        Some(index) => {
            let mut items = match slot.map(|i| &entries[i].value) {
                Some(Value::Array(items)) => items.clone(),
                _ => Vec::new(),
            };
            let index = match index.is_empty() {
                // The next whole number after the largest one used.
                true => items
                    .iter()
                    .filter_map(|(k, _)| k.parse::<i64>().ok())
                    .max()
                    .map_or(0, |n| n + 1)
                    .to_string(),
                false => index,
            };
            match items.iter_mut().find(|(k, _)| *k == index) {
                Some(item) => item.1 = value,
                None => items.push((index, value)),
            }
            Value::Array(items)
        }
    };
    let entry = Entry {
        key,
        value: new,
        line,
    };
    match slot {
        Some(i) => entries[i] = entry,
        None => entries.push(entry),
    }
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    env: &'a dyn Fn(&str) -> Option<String>,
}

/// A piece of a value: its text, and whether it was quoted (spaces kept, no keywords).
struct Piece {
    text: Vec<(char, bool)>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn pos_next(&mut self) {
        if self.peek() == Some('\n') {
            self.line += 1;
        }
        self.pos += 1;
    }

    fn error(&self, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            line: self.line,
            message: message.into(),
        }
    }

    fn skip_to_line_end(&mut self) {
        while let Some(c) = self.peek() {
            if c == '\n' {
                break;
            }
            self.pos += 1;
        }
    }

    /// Skips a line of nothing but blanks and perhaps a `;` comment, with its end.
    fn blank_or_comment_line(&mut self) -> bool {
        let start = self.pos;
        self.skip_blanks();
        match self.peek() {
            Some(';') => self.skip_to_line_end(),
            None | Some('\n') => {}
            Some(_) => {
                self.pos = start;
                return false;
            }
        }
        self.pos_next();
        true
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.pos += 1;
        }
    }

    /// `[name]` at the start of a line; the rest of the line is ignored, as PHP does.
    fn section_header(&mut self) -> Result<String, SyntaxError> {
        self.pos += 1;
        let mut name = String::new();
        loop {
            match self.peek() {
                None | Some('\n') | Some(';') => {
                    return Err(self.error("a section header without its ']'"));
                }
                Some(']') => break,
                // PHP drops the quotes of a quoted part.
                Some('"') => {}
                Some(c) => name.push(c),
            }
            self.pos += 1;
        }
        self.skip_to_line_end();
        Ok(name)
    }

    /// `key = value` (with its comment): `None` for a line without `=` (PHP ignores it).
    #[allow(clippy::type_complexity)]
    fn assignment(&mut self) -> Result<Option<(String, Option<String>, String)>, SyntaxError> {
        let mut raw_key = String::new();
        loop {
            match self.peek() {
                None | Some('\n') => {
                    if raw_key.contains(['[', ']']) {
                        return Err(self.error("expected '=' after the key"));
                    }
                    return Ok(None);
                }
                Some(';') => {
                    self.skip_to_line_end();
                    return Ok(None);
                }
                Some('=') => {
                    self.pos += 1;
                    break;
                }
                Some(c) if OPERATORS.contains(&c) || c == '"' => {
                    return Err(self.error(format!("{c:?} in a key")));
                }
                Some(c) => raw_key.push(c),
            }
            self.pos += 1;
        }
        let (key, index) = split_key(raw_key.trim()).map_err(|m| self.error(m))?;
        if keyword(&key).is_some() {
            return Err(self.error(format!(
                "{key:?} is a reserved word (a boolean) and cannot be a key"
            )));
        }
        let value = self.value()?;
        Ok(Some((key, index, value)))
    }

    /// Everything after the `=` up to the end of the line (or of the last quoted string)
    /// and an optional `;` comment.
    fn value(&mut self) -> Result<String, SyntaxError> {
        let mut pieces: Vec<Piece> = Vec::new();
        loop {
            self.skip_blanks();
            match self.peek() {
                None | Some('\n') => break,
                Some(';') => {
                    self.skip_to_line_end();
                    break;
                }
                Some('"') => pieces.push(self.double_quoted()?),
                Some(_) => pieces.push(self.unquoted()?),
            }
        }
        // Unquoted words that are booleans stand alone, as in PHP (`yes no` is an error).
        for piece in &pieces {
            // Quoted characters part words but are never one.
            let unquoted: String = piece
                .text
                .iter()
                .map(|&(c, quoted)| if quoted { '\0' } else { c })
                .collect();
            let words: Vec<&str> = unquoted
                .split(|c: char| c.is_whitespace() || c == '\0')
                .filter(|w| !w.is_empty())
                .collect();
            let any_quoted = piece.text.iter().any(|(_, q)| *q);
            if let Some(word) = words.iter().find(|w| keyword(w).is_some()) {
                if any_quoted || words.len() > 1 || pieces.len() > 1 {
                    return Err(self.error(format!(
                        "{word:?} is a reserved word (a boolean) inside a value: quote the value"
                    )));
                }
                return Ok(keyword(word).unwrap_or_default().to_string());
            }
        }
        Ok(pieces
            .iter()
            .flat_map(|p| p.text.iter().map(|(c, _)| *c))
            .collect())
    }

    /// `"..."`: `\"` and `\\` are escapes, any other backslash is itself; may span lines.
    fn double_quoted(&mut self) -> Result<Piece, SyntaxError> {
        let opened = self.line;
        self.pos += 1;
        let mut text = Vec::new();
        loop {
            match self.peek() {
                None => {
                    return Err(SyntaxError {
                        line: opened,
                        message: "a '\"' that is never closed".into(),
                    });
                }
                Some('"') => {
                    self.pos += 1;
                    return Ok(Piece { text });
                }
                Some('\\') if matches!(self.chars.get(self.pos + 1), Some('"' | '\\')) => {
                    text.push((self.chars[self.pos + 1], true));
                    self.pos += 2;
                }
                Some('$') if self.chars.get(self.pos + 1) == Some(&'{') => {
                    text.extend(self.variable()?.chars().map(|c| (c, true)));
                }
                Some(c) => {
                    text.push((c, true));
                    self.pos_next();
                }
            }
        }
    }

    /// Unquoted text (with `'raw'` parts) up to a `"`, a `;` or the end of the line; the
    /// unquoted blanks at either end are dropped.
    fn unquoted(&mut self) -> Result<Piece, SyntaxError> {
        let mut text: Vec<(char, bool)> = Vec::new();
        loop {
            match self.peek() {
                None | Some('\n' | ';' | '"') => break,
                Some('\'') => {
                    let opened = self.line;
                    self.pos += 1;
                    loop {
                        match self.peek() {
                            None => {
                                return Err(SyntaxError {
                                    line: opened,
                                    message: "a \"'\" that is never closed".into(),
                                });
                            }
                            Some('\'') => break,
                            Some(c) => {
                                text.push((c, true));
                                self.pos_next();
                            }
                        }
                    }
                    self.pos += 1;
                }
                Some('$') if self.chars.get(self.pos + 1) == Some(&'{') => {
                    text.extend(self.variable()?.chars().map(|c| (c, true)));
                }
                Some('=') => {
                    return Err(self.error("'=' in an unquoted value: quote the value"));
                }
                Some(c) if OPERATORS.contains(&c) => {
                    return Err(self.error(format!(
                        "{c:?} in an unquoted value, which PHP reads as an operator: quote the value"
                    )));
                }
                Some(c) => {
                    text.push((c, false));
                    self.pos += 1;
                }
            }
        }
        while text
            .last()
            .is_some_and(|&(c, q)| !q && (c == ' ' || c == '\t'))
        {
            text.pop();
        }
        Ok(Piece { text })
    }

    /// `${NAME}`: the environment variable (empty when unset).
    fn variable(&mut self) -> Result<String, SyntaxError> {
        self.pos += 2;
        let mut name = String::new();
        loop {
            match self.peek() {
                None | Some('\n') => return Err(self.error("a '${' without its '}'")),
                Some('}') => break,
                Some(c) => name.push(c),
            }
            self.pos += 1;
        }
        self.pos += 1;
        Ok((self.env)(name.trim()).unwrap_or_default())
    }
}

/// `key`, `key[]` or `key[index]`: the key and the index (empty for `[]`).
fn split_key(raw: &str) -> Result<(String, Option<String>), String> {
    if raw.is_empty() {
        return Err("a line that starts with '=': the key is missing".into());
    }
    match raw.find('[') {
        None if raw.contains(']') => Err(format!("key {raw:?} has a ']' without its '['")),
        None => Ok((raw.to_string(), None)),
        Some(open) => {
            let Some(inner) = raw[open + 1..].strip_suffix(']') else {
                return Err(format!("key {raw:?}: expected ']' at its end"));
            };
            if inner.contains(['[', ']']) {
                return Err(format!("key {raw:?}: one [index] at most"));
            }
            let key = raw[..open].trim_end().to_string();
            if key.is_empty() {
                return Err(format!("key {raw:?} has no name before its '['"));
            }
            Ok((key, Some(inner.trim_start().to_string())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn read(text: &str) -> Ini {
        parse(text, &no_env).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn value(text: &str) -> String {
        let ini = read(&format!("[s]\nk = {text}\n"));
        match &ini.sections[0].entries[0].value {
            Value::Text(v) => v.clone(),
            other => panic!("{other:?}"),
        }
    }

    fn error(text: &str) -> SyntaxError {
        parse(text, &no_env).expect_err(text)
    }

    #[test]
    fn sections_keys_and_comments() {
        let ini = read(
            "; comment\ntop = 1\n[GearmanManager]\ncount = 3 ; ten\n\n[Sum]\n\tdedicated_count=5\n",
        );
        assert_eq!(ini.top[0].key, "top");
        assert_eq!(ini.sections.len(), 2);
        assert_eq!(ini.sections[0].name, "GearmanManager");
        assert_eq!(ini.sections[0].line, 3);
        let count = ini.sections[0].get("count").unwrap();
        assert_eq!(
            (count.value.clone(), count.line),
            (Value::Text("3".into()), 4)
        );
        assert_eq!(
            ini.sections[1].get("dedicated_count").unwrap().value,
            Value::Text("5".into())
        );
    }

    #[test]
    fn values_as_php_reads_them() {
        assert_eq!(value("  a b c  "), "a b c");
        assert_eq!(value("\"a\" x \"b\""), "axb");
        assert_eq!(value("\" spaced \""), " spaced ");
        assert_eq!(value("'x\\y' z"), "x\\y z");
        assert_eq!(value("x ' y ' z"), "x  y  z");
        assert_eq!(value("'a;b'"), "a;b");
        assert_eq!(value("\"a;b\" ; comment"), "a;b");
        assert_eq!(value("\"x\\\"y\\\\z\\n\""), "x\"y\\z\\n");
        assert_eq!(value("x#y"), "x#y");
        assert_eq!(value("[x]"), "[x]");
        assert_eq!(value("10.0.0.1:4730,10.0.0.2"), "10.0.0.1:4730,10.0.0.2");
        assert_eq!(value(""), "");
        assert_eq!(value("$x"), "$x");
    }

    #[test]
    fn booleans_and_null_are_words_of_their_own() {
        for (word, read) in [
            ("yes", "1"),
            ("On", "1"),
            ("TRUE", "1"),
            ("no", ""),
            ("off", ""),
            ("none", ""),
            ("Null", ""),
            ("false", ""),
        ] {
            assert_eq!(value(word), read, "{word}");
        }
        assert_eq!(value("\"yes\""), "yes");
        assert_eq!(value("on1"), "on1");
        assert!(error("[s]\nb = yes no\n").message.contains("reserved word"));
        assert!(error("[s]\nyes = 1\n").message.contains("reserved word"));
    }

    #[test]
    fn quoted_values_may_span_lines() {
        let ini = read("[s]\na = \"multi\nline\"\nc = 2\n");
        assert_eq!(
            ini.sections[0].get("a").unwrap().value,
            Value::Text("multi\nline".into())
        );
        assert_eq!(ini.sections[0].get("c").unwrap().line, 4);
    }

    #[test]
    fn arrays_and_repeats() {
        let ini = read("[s]\na=1\na=2\nd=1\nd[]=2\ne[]=1\ne=2\nf[0]=a\nf[]=b\ng[x]=1\ng[]=2\n");
        let s = &ini.sections[0];
        assert_eq!(s.get("a").unwrap().value, Value::Text("2".into()));
        assert_eq!(s.get("a").unwrap().line, 3);
        assert_eq!(
            s.get("d").unwrap().value,
            Value::Array(vec![("0".into(), "2".into())])
        );
        assert_eq!(s.get("e").unwrap().value, Value::Text("2".into()));
        assert_eq!(
            s.get("f").unwrap().value,
            Value::Array(vec![("0".into(), "a".into()), ("1".into(), "b".into())])
        );
        assert_eq!(
            s.get("g").unwrap().value,
            Value::Array(vec![("x".into(), "1".into()), ("0".into(), "2".into())])
        );
    }

    #[test]
    fn a_repeated_section_replaces_the_first() {
        let ini = read("[S]\nb=1\n[S]\nc=2\n");
        assert_eq!(ini.sections.len(), 1);
        assert!(ini.sections[0].get("b").is_none());
        assert_eq!(ini.notes.len(), 1);
        assert_eq!(ini.notes[0].0, 3);
    }

    #[test]
    fn lines_php_ignores_are_noted() {
        let ini = read("[S] trailing junk\nnokey\n# a = b\n");
        assert_eq!(ini.sections[0].name, "S");
        assert_eq!(
            ini.notes,
            vec![(2, "a line without '=': PHP ignores it".into())]
        );
        // PHP 7 dropped '#' comments: this is a key.
        assert!(ini.sections[0].get("# a").is_some());
    }

    #[test]
    fn environment_variables_are_expanded() {
        let env = |name: &str| (name == "HOME").then(|| "/root".to_string());
        let ini = parse("[s]\na = ${HOME}/x\nb = \"${NOPE}y\"\n", &env).unwrap();
        assert_eq!(
            ini.sections[0].get("a").unwrap().value,
            Value::Text("/root/x".into())
        );
        assert_eq!(
            ini.sections[0].get("b").unwrap().value,
            Value::Text("y".into())
        );
    }

    #[test]
    fn line_endings_and_bom() {
        let ini = read("\u{feff}[S]\r\na = 1\r\nb = 2\rc = 3\n");
        assert_eq!(ini.sections[0].entries.len(), 3);
        assert_eq!(ini.sections[0].get("c").unwrap().line, 4);
    }

    #[test]
    fn what_php_refuses_is_an_error_with_its_line() {
        for (text, line, words) in [
            ("[S\nb=1\n", 1, "without its ']'"),
            ("[S;x]\n", 1, "without its ']'"),
            ("[S]\nb = a=b\n", 2, "'='"),
            ("[S]\nb = /a/~b\n", 2, "operator"),
            ("[S]\nb = a (x).log\n", 2, "operator"),
            ("[S]\nb = a|b\n", 2, "operator"),
            ("[S]\nd{e}=2\n", 2, "in a key"),
            ("[S]\nb = \"never\n\nclosed\n", 2, "never closed"),
            ("[S]\nb = 'never\n", 2, "never closed"),
            ("[S]\n= 1\n", 2, "key is missing"),
            ("[S]\n  [T]\n", 2, "expected '='"),
            ("[S]\na b[ = 1\n", 2, "expected ']'"),
        ] {
            let e = error(text);
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(words), "{text:?}: {e}");
        }
    }
}
