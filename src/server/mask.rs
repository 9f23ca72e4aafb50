//! Masking of personal fields for roles that may not see them (analysts, supervisors, the
//! hotline): what is left identifies nobody but still lets a caller check a value they
//! already know ("does the id end in 1234?").

/// Source-config roles of the columns that hold personal data about a person.
pub const PERSONAL_ROLES: &[&str] = &[
    "person_id",
    "party_id",
    "person_ref",
    "party_ref",
    "name",
    "surname",
    "given_name",
    "birth_date",
    "phone",
    "address",
    "address_line",
    "postcode",
    "key",
];

/// Masks a value of a column with source-config role `role`.
pub fn field(role: &str, value: &str) -> String {
    match role {
        "name" | "given_name" => name(value),
        "surname" => value.to_string(),
        "birth_date" => value
            .get(..4)
            .map_or_else(|| "*".into(), |y| format!("{y}-**-**")),
        "address" | "address_line" => {
            let keep: String = value.chars().take(6).collect();
            format!("{keep}…")
        }
        _ => identifier(value),
    }
}

/// `张三丰` → `张**`.
pub fn name(value: &str) -> String {
    let mut c = value.chars();
    match c.next() {
        Some(first) => std::iter::once(first).chain(c.map(|_| '*')).collect(),
        None => String::new(),
    }
}

/// Keeps the first 6 and last 4 characters of long identifiers (division code and check
/// digits of an id number: not the birth date), 3 and 4 of phones, masks short ones whole.
pub fn identifier(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    let (head, tail) = match n {
        0..=6 => (0, 0),
        7..=12 => (3, 4),
        _ => (6, 4),
    };
    chars
        .iter()
        .enumerate()
        .map(|(i, &c)| if i < head || i >= n - tail { c } else { '*' })
        .collect()
}

/// Masks identifier-like tokens (runs of 11 or more digits and capitals: id numbers, USCCs,
/// phones, account numbers) inside free text such as an explanation.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.chars().filter(char::is_ascii_digit).count() >= 11 {
            out.push_str(&identifier(run));
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in s.chars() {
        if c.is_ascii_digit() || c.is_ascii_uppercase() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_what_identifies_nobody() {
        assert_eq!(identifier("41140219410302123X"), "411402********123X");
        assert_eq!(identifier("13812345678"), "138****5678");
        assert_eq!(name("张三丰"), "张**");
        assert_eq!(field("birth_date", "1941-03-02"), "1941-**-**");
        assert_eq!(
            text("GA.person.pid = 41140219410302123X, age 84"),
            "GA.person.pid = 411402********123X, age 84"
        );
        // Dates and amounts are not identifiers.
        assert_eq!(
            text("born 1941-03-02, 2025 fen 12345"),
            "born 1941-03-02, 2025 fen 12345"
        );
    }
}
