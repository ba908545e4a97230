//! BuildKit's AST dump (`Node.Dump()`), the format of the conformance corpus' `result` files.

use super::goquote::go_quote;
use super::{Ast, Node};

/// Dumps the AST: one line per instruction, each line ending with `\n`.
pub fn dump(ast: &Ast) -> String {
    let mut out = String::new();
    for child in &ast.children {
        out.push('(');
        out.push_str(&dump_node(child));
        out.push_str(")\n");
    }
    out
}

fn dump_node(node: &Node) -> String {
    let mut out = node.name().to_string();
    if !node.flags.is_empty() {
        let quoted: Vec<String> = node.flags.iter().map(|f| go_quote(&f.text)).collect();
        out.push_str(" [");
        out.push_str(&quoted.join(" "));
        out.push(']');
    }
    if let Some(sub) = &node.subcommand {
        out.push_str(" (");
        out.push_str(&dump_node(sub));
        out.push(')');
    }
    for arg in &node.args {
        out.push(' ');
        out.push_str(&go_quote(arg));
    }
    out.trim().to_string()
}
