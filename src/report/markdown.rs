//! Renders a [`Document`] as GitHub-flavoured Markdown. Charts are left out (Markdown has no
//! portable way to inline SVG); the HTML report carries them.

use std::fmt::Write as _;

use super::document::{Block, Document, Table};

/// Renders the report as Markdown.
pub fn render_markdown(document: &Document) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n\n{}\n", document.title, document.subtitle);
    for section in &document.sections {
        let blocks: Vec<&Block> = section
            .blocks
            .iter()
            .filter(|block| !matches!(block, Block::Figures(_)))
            .collect();
        if blocks.is_empty() {
            continue;
        }
        let _ = writeln!(out, "## {}\n", section.title);
        for block in blocks {
            match block {
                Block::Paragraph(text) => {
                    let _ = writeln!(out, "{text}\n");
                }
                Block::List(items) => {
                    for item in items {
                        let _ = writeln!(out, "- {item}");
                    }
                    out.push('\n');
                }
                Block::Table(table) => write_table(&mut out, table),
                Block::Figures(_) => {}
            }
        }
    }
    out
}

/// Writes a pipe table: the first column left-aligned, the others right-aligned.
pub fn write_table(out: &mut String, table: &Table) {
    let _ = writeln!(out, "| {} |", table.header.join(" | "));
    let alignments: Vec<&str> = (0..table.header.len())
        .map(|column| if column == 0 { "---" } else { "---:" })
        .collect();
    let _ = writeln!(out, "|{}|", alignments.join("|"));
    for row in &table.rows {
        let cells: Vec<String> = row.iter().map(|cell| cell.replace('|', "\\|")).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
}
