//! Plain-text tables with aligned columns, and aligned `name  value` listings. Widths count
//! characters; control characters in cells are escaped so one row stays one line; the last
//! column is not padded (no trailing spaces).

/// Between two columns.
const GAP: &str = "  ";

/// A table: a header row and data rows, every row as wide as the header.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells print empty, extra cells are dropped.
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells: Vec<String> = cells.iter().map(|c| escape(c)).collect();
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|i| {
                std::iter::once(&self.header)
                    .chain(&self.rows)
                    .map(|row| row[i].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str(GAP);
                }
                line.push_str(cell);
                if i + 1 < row.len() {
                    let pad = widths[i] - cell.chars().count();
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `name  value` lines with the values aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0);
    pairs
        .iter()
        .map(|(name, value)| format!("{name:width$}{GAP}{}\n", escape(value)))
        .collect()
}

/// An optional value as a cell: `-` when absent.
pub fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// Escapes control characters (newlines, tabs, escapes) so a cell stays on one line.
fn escape(cell: &str) -> String {
    if !cell.chars().any(char::is_control) {
        return cell.to_owned();
    }
    cell.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_and_lines_have_no_trailing_spaces() {
        let mut table = Table::new(&["ID", "HOLDER", "STATE"]);
        table.row(vec![
            "1".into(),
            "orders-svc/instance-3".into(),
            "active".into(),
        ]);
        table.row(vec!["22".into(), "b".into(), String::new()]);
        assert_eq!(
            table.render(),
            "ID  HOLDER                 STATE\n\
             1   orders-svc/instance-3  active\n\
             22  b\n"
        );
    }

    #[test]
    fn widths_count_characters_not_bytes_and_control_characters_are_escaped() {
        let mut table = Table::new(&["HOLDER", "X"]);
        table.row(vec!["zürich".into(), "a\nb".into()]);
        assert_eq!(table.render(), "HOLDER  X\nzürich  a\\nb\n");
    }

    #[test]
    fn fields_align_their_values() {
        assert_eq!(
            fields(&[("id", "1".into()), ("holder", "h".into())]),
            "id      1\nholder  h\n"
        );
    }
}
