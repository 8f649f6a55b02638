//! Renders a [`Document`] as one self-contained HTML page: inline CSS and inline SVG charts,
//! no scripts and no external resources, so it opens offline and in CI artifact viewers.

use std::fmt::Write as _;

use super::chart::escape;
use super::document::{Block, Document, Table};

const STYLE: &str = "
body { font-family: sans-serif; margin: 24px auto; padding: 0 24px; max-width: 1600px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 18px; border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 28px; }
.subtitle { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f4f4f4; }
td.number, th.number { text-align: right; font-variant-numeric: tabular-nums; }
.figures { display: flex; flex-wrap: wrap; gap: 8px; }
svg { max-width: 100%; height: auto; }
figure { margin: 0; border: 1px solid #eee; padding: 4px; }
figcaption { font-size: 12px; color: #555; max-width: 760px; }
";

/// Renders the report as a standalone HTML page.
pub fn render_html(document: &Document) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n<p class=\"subtitle\">{}</p>\n",
        escape(&document.title),
        escape(&document.title),
        escape(&document.subtitle)
    );
    for section in &document.sections {
        let _ = writeln!(out, "<h2>{}</h2>", escape(&section.title));
        for block in &section.blocks {
            match block {
                Block::Paragraph(text) => {
                    let _ = writeln!(out, "<p>{}</p>", escape(text));
                }
                Block::List(items) => {
                    out.push_str("<ul>\n");
                    for item in items {
                        let _ = writeln!(out, "<li>{}</li>", escape(item));
                    }
                    out.push_str("</ul>\n");
                }
                Block::Table(table) => write_table(&mut out, table),
                Block::Figures(figures) => {
                    out.push_str("<div class=\"figures\">\n");
                    for figure in figures {
                        let _ = writeln!(
                            out,
                            "<figure>{}<figcaption>{}</figcaption></figure>",
                            figure.svg,
                            escape(&figure.caption)
                        );
                    }
                    out.push_str("</div>\n");
                }
            }
        }
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn write_table(out: &mut String, table: &Table) {
    let class = |column: usize| if column == 0 { "" } else { " class=\"number\"" };
    out.push_str("<table>\n<tr>");
    for (column, cell) in table.header.iter().enumerate() {
        let _ = write!(out, "<th{}>{}</th>", class(column), escape(cell));
    }
    out.push_str("</tr>\n");
    for row in &table.rows {
        out.push_str("<tr>");
        for (column, cell) in row.iter().enumerate() {
            let _ = write!(out, "<td{}>{}</td>", class(column), escape(cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}
