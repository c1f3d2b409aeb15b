//! How user commands print: aligned tables with a bold header and coloured states on a
//! terminal; tab-separated plain text when piped. `NO_COLOR` (any non-empty value) and
//! `TERM=dumb` turn colours off on a terminal.

use std::io::IsTerminal;

/// How stdout is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Stdout is a terminal: align columns.
    pub terminal: bool,
    /// ANSI colours are wanted.
    pub color: bool,
}

impl Style {
    /// The style of this process's stdout and environment.
    pub fn detect() -> Self {
        let terminal = std::io::stdout().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
            || std::env::var("TERM").is_ok_and(|t| t == "dumb");
        Self {
            terminal,
            color: terminal && !no_color,
        }
    }

    /// `text` in the colour its state calls for (green for healthy states, red for failures,
    /// yellow for the in-between), when colours are on.
    pub fn state(&self, text: &str) -> String {
        if !self.color {
            return text.to_owned();
        }
        let code = match text {
            "RUNNING" | "ACTIVE" | "COMPLETED" | "HEALTHY" | "healthy" | "ready" | "ok"
            | "connected" | "active" => "32",
            "STOPPED" | "FAILED" | "UNHEALTHY" | "INACTIVE" | "unhealthy" | "disconnected"
            | "failed" | "not ready" => "31",
            "PENDING" | "PROVISIONING" | "ACTIVATING" | "DEACTIVATING" | "STOPPING"
            | "DEPROVISIONING" | "IN_PROGRESS" | "DRAINING" | "provisioning" => "33",
            _ => return text.to_owned(),
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    /// `text` in bold, when colours are on.
    pub fn bold(&self, text: &str) -> String {
        if self.color {
            format!("\x1b[1m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

/// Rows under a header.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    /// Columns holding states (coloured on a terminal).
    state_columns: Vec<usize>,
}

/// The visible width of `s` (ANSI escapes excluded).
fn width(s: &str) -> usize {
    let mut n = 0;
    let mut escape = false;
    for c in s.chars() {
        match (escape, c) {
            (false, '\x1b') => escape = true,
            (true, 'm') => escape = false,
            (true, _) => {}
            (false, _) => n += 1,
        }
    }
    n
}

impl Table {
    pub fn new(header: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            rows: Vec::new(),
            state_columns: Vec::new(),
        }
    }

    /// Marks the column named `name` as holding states.
    pub fn states(mut self, name: &str) -> Self {
        if let Some(i) = self.header.iter().position(|h| *h == name) {
            self.state_columns.push(i);
        }
        self
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text for `style`.
    pub fn render(&self, style: Style) -> String {
        let clean = |s: &str| s.replace(['\t', '\n'], " ");
        let mut out = String::new();
        if !style.terminal {
            out.push_str(&self.header.join("\t"));
            out.push('\n');
            for r in &self.rows {
                let cells: Vec<String> = r.iter().map(|c| clean(c)).collect();
                out.push_str(&cells.join("\t"));
                out.push('\n');
            }
            return out;
        }
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let c = clean(c);
                        if self.state_columns.contains(&i) {
                            style.state(&c)
                        } else {
                            c
                        }
                    })
                    .collect()
            })
            .collect();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for r in &cells {
            for (i, c) in r.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(width(c));
                }
            }
        }
        let line = |cells: Vec<String>| {
            let last = cells.len().saturating_sub(1);
            let mut s = String::new();
            for (i, c) in cells.into_iter().enumerate() {
                let pad = widths
                    .get(i)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(width(&c));
                s.push_str(&c);
                if i < last {
                    s.push_str(&" ".repeat(pad + 2));
                }
            }
            s.push('\n');
            s
        };
        out.push_str(&line(
            self.header
                .iter()
                .map(|h| style.bold(&format!("{h:<w$}", w = h.len())))
                .collect(),
        ));
        for r in cells {
            out.push_str(&line(r));
        }
        out
    }

    /// Prints the table to stdout.
    pub fn print(&self, style: Style) {
        print!("{}", self.render(style));
    }
}

/// A duration in seconds as `docker ps` shows ages: `42s`, `5m`, `3h`, `2d`.
pub fn age(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        let mut t = Table::new(&["NAME", "STATUS"]).states("STATUS");
        t.row(vec!["web".into(), "RUNNING".into()]);
        t.row(vec!["worker-long".into(), "STOPPED".into()]);
        t
    }

    #[test]
    fn piped_output_is_tab_separated_without_escapes() {
        let out = table().render(Style {
            terminal: false,
            color: false,
        });
        assert_eq!(out, "NAME\tSTATUS\nweb\tRUNNING\nworker-long\tSTOPPED\n");
    }

    #[test]
    fn terminal_output_is_aligned_and_coloured_unless_told_not_to() {
        let plain = table().render(Style {
            terminal: true,
            color: false,
        });
        assert_eq!(
            plain,
            "NAME         STATUS\nweb          RUNNING\nworker-long  STOPPED\n"
        );
        let coloured = table().render(Style {
            terminal: true,
            color: true,
        });
        assert!(coloured.contains("\x1b[32mRUNNING\x1b[0m"), "{coloured}");
        assert!(coloured.contains("\x1b[1mNAME\x1b[0m"), "{coloured}");
        // Alignment ignores the escapes.
        assert!(coloured.contains("web          \x1b[32m"), "{coloured}");
    }

    #[test]
    fn ages_read_like_docker_ps() {
        assert_eq!(age(42.0), "42s");
        assert_eq!(age(300.0), "5m");
        assert_eq!(age(7200.0), "2h");
        assert_eq!(age(200000.0), "2d");
    }
}
