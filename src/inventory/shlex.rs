//! Python's `shlex.split(line, comments=True)`, which Ansible's INI plugin splits a host
//! line with: words split on whitespace, `'...'` literal, `"..."` where only `\"` and `\\`
//! are escapes, a backslash escaping any character outside quotes, and `#` ending the
//! line where a word may start or inside a word (`a#b` is `a`). Quotes are removed:
//! `x="1"` is the word `x=1`.

/// The words of `line`, or the message Python's shlex raises.
pub(super) fn split(line: &str) -> Result<Vec<String>, &'static str> {
    let mut words = Vec::new();
    let mut word = String::new();
    // Whether a word is being read (an empty quoted word `''` is still a word).
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '#' => break,
            '\\' => {
                word.push(chars.next().ok_or("No escaped character")?);
                in_word = true;
            }
            '\'' | '"' => {
                in_word = true;
                quoted(c, &mut chars, &mut word)?;
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// The rest of a quoted part, after its opening quote `q`, appended to `word`.
fn quoted(q: char, chars: &mut std::str::Chars<'_>, word: &mut String) -> Result<(), &'static str> {
    loop {
        match chars.next().ok_or("No closing quotation")? {
            c if c == q => return Ok(()),
            '\\' if q == '"' => {
                let e = chars.next().ok_or("No closing quotation")?;
                if e != '"' && e != '\\' {
                    word.push('\\');
                }
                word.push(e);
            }
            c => word.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_as_python_shlex_does() {
        let cases: [(&str, &[&str]); 6] = [
            ("web1 a=1 b='x y'", &["web1", "a=1", "b=x y"]),
            (r#"h x="a \"q\" \n" y=''"#, &["h", r#"x=a "q" \n"#, "y="]),
            ("h a=1 # note", &["h", "a=1"]),
            ("h a=1#b", &["h", "a=1"]),
            (r"h a=b\ c", &["h", "a=b c"]),
            ("h msg='#not a comment'", &["h", "msg=#not a comment"]),
        ];
        for (line, want) in cases {
            assert_eq!(split(line).unwrap(), want, "{line}");
        }
        assert_eq!(split("h a='x").unwrap_err(), "No closing quotation");
        assert_eq!(split("h a\\").unwrap_err(), "No escaped character");
    }
}
