//! Einsum (attention in timm/tf2onnx exports: `bhid,bhjd->bhij`, `bhij,bhjd->bhid`,
//! `...ij,jk->...ik`). Einsum is multilinear, so the gradient of operand `k` is another
//! Einsum of the output gradient with the other operands, whose output subscripts are
//! operand `k`'s. Indices that appear only in operand `k` were summed out by the forward
//! op; the gradient is constant along them (Unsqueeze, then Expand to the operand's shape).

use super::RuleCtx;
use crate::grad::GradError;
use crate::onnx::attr_string;
use crate::onnx::shapes::Dim;

type Grads = Result<Vec<Option<String>>, GradError>;

/// Subscripts of each operand and of the output, ellipses replaced by fresh letters.
struct Parsed {
    inputs: Vec<Vec<char>>,
    output: Vec<char>,
}

/// Parse `equation` for operands of the given ranks. An ellipsis stands for the leading
/// axes not named by letters, right-aligned across operands (numpy broadcasting), so each
/// of its positions gets one fresh letter shared by all operands.
fn parse(equation: &str, ranks: &[usize]) -> Result<Parsed, String> {
    let eq: String = equation.chars().filter(|ch| !ch.is_whitespace()).collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l.to_owned(), Some(r.to_owned())),
        None => (eq.clone(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != ranks.len() {
        return Err(format!("{} operand terms for {} inputs", terms.len(), ranks.len()));
    }
    let used: Vec<char> = eq.chars().filter(char::is_ascii_alphabetic).collect();
    let mut fresh = ('a'..='z').chain('A'..='Z').filter(|ch| !used.contains(ch));
    let ell_len = terms
        .iter()
        .zip(ranks)
        .filter(|(t, _)| t.contains("..."))
        .map(|(t, &r)| r.saturating_sub(t.replace("...", "").len()))
        .max()
        .unwrap_or(0);
    let ell: Vec<char> = (0..ell_len).map(|_| fresh.next()).collect::<Option<_>>().ok_or("too many axes")?;
    let expand = |term: &str, rank: Option<usize>| -> Result<Vec<char>, String> {
        let mut out = Vec::new();
        match term.find("...") {
            Some(pos) => {
                let n = rank.map_or(ell_len, |r| r.saturating_sub(term.len() - 3));
                out.extend(term[..pos].chars());
                out.extend(&ell[ell_len.saturating_sub(n)..]);
                out.extend(term[pos + 3..].chars());
            }
            None => {
                if rank.is_some_and(|r| r != term.len()) {
                    return Err(format!("term `{term}` does not match its operand's rank"));
                }
                out.extend(term.chars());
            }
        }
        if let Some(bad) = out.iter().find(|ch| !ch.is_ascii_alphabetic()) {
            return Err(format!("unexpected `{bad}` in `{term}`"));
        }
        Ok(out)
    };
    let inputs: Vec<Vec<char>> = terms.iter().zip(ranks).map(|(t, &r)| expand(t, Some(r))).collect::<Result<_, _>>()?;
    let output = match rhs {
        Some(r) => expand(&r, None)?,
        None => {
            // Implicit output: the ellipsis, then letters used exactly once, alphabetically.
            let all: Vec<char> = inputs.iter().flatten().copied().collect();
            let mut once: Vec<char> = all
                .iter()
                .copied()
                .filter(|ch| !ell.contains(ch) && all.iter().filter(|o| *o == ch).count() == 1)
                .collect();
            once.sort_unstable();
            ell.iter().copied().chain(once).collect()
        }
    };
    Ok(Parsed { inputs, output })
}

fn term(chars: &[char]) -> String {
    chars.iter().collect()
}

pub fn einsum(c: &mut RuleCtx<'_>) -> Grads {
    let g = c.grad();
    let equation = attr_string(c.node, "equation").ok_or_else(|| c.unsupported("Einsum without an equation"))?;
    let n = c.node.input.len();
    let names: Vec<String> = (0..n).map(|i| c.input(i).to_owned()).collect();
    let dims: Vec<Vec<Dim>> = names.iter().map(|x| c.dims(x)).collect::<Result<_, _>>()?;
    let ranks: Vec<usize> = dims.iter().map(Vec::len).collect();
    let p = parse(&equation, &ranks).map_err(|e| c.unsupported(&format!("equation `{equation}`: {e}")))?;
    for t in p.inputs.iter().chain(std::iter::once(&p.output)) {
        if (1..t.len()).any(|i| t[..i].contains(&t[i])) {
            return Err(c.unsupported(&format!("equation `{equation}` repeats an index within one term")));
        }
    }
    // Each letter must have one size: broadcasting a size-1 axis against a larger one would
    // need an extra sum in the gradient.
    let mut sizes: Vec<(char, Dim)> = Vec::new();
    for (t, d) in p.inputs.iter().zip(&dims) {
        for (ch, dim) in t.iter().zip(d) {
            match sizes.iter().find(|(l, _)| l == ch) {
                Some((_, other)) if other != dim => {
                    return Err(c.unsupported(&format!("equation `{equation}` broadcasts index `{ch}`")));
                }
                Some(_) => {}
                None => sizes.push((*ch, *dim)),
            }
        }
    }
    let mut out = vec![None; n];
    for k in 0..n {
        if !c.needs(k) {
            continue;
        }
        let mine = &p.inputs[k];
        let elsewhere =
            |ch: &char| p.output.contains(ch) || p.inputs.iter().enumerate().any(|(j, t)| j != k && t.contains(ch));
        let kept: Vec<char> = mine.iter().copied().filter(|ch| elsewhere(ch)).collect();
        let mut terms = vec![term(&p.output)];
        let mut operands = vec![g.clone()];
        for (j, t) in p.inputs.iter().enumerate() {
            if j != k {
                terms.push(term(t));
                operands.push(names[j].clone());
            }
        }
        let eq = format!("{}->{}", terms.join(","), term(&kept));
        let refs: Vec<&str> = operands.iter().map(String::as_str).collect();
        let gk = c.b.op("Einsum", &refs, vec![crate::onnx::attrs::string("equation", &eq)]);
        out[k] = Some(if kept.len() == mine.len() {
            gk
        } else {
            let missing: Vec<i64> =
                mine.iter().enumerate().filter(|(_, ch)| !elsewhere(ch)).map(|(i, _)| i as i64).collect();
            let u = c.b.unsqueeze(&gk, &missing);
            c.b.expand_like(&u, &names[k])
        });
    }
    Ok(out)
}
