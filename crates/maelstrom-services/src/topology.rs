//! The broadcast workload's topologies (spec §9.3): which neighbours each node is told about.

use serde_json::{Map, Value};

/// A topology shape over an ordered list of nodes.
///
/// ```
/// use maelstrom_services::topology::Topology;
/// assert_eq!(Topology::parse("tree"), Some(Topology::Tree(2)));
/// assert_eq!(Topology::parse("grid"), Some(Topology::Grid));
/// assert_eq!(Topology::parse("ring"), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Nodes on a square grid, linked to their up/down/left/right cells (the default).
    Grid,
    /// Each node linked to its predecessor and successor.
    Line,
    /// A heap-ordered tree with the given branching factor (2, 3 or 4).
    Tree(usize),
    /// Every node linked to every other.
    Total,
}

impl Topology {
    /// Parses a `--topology` name: `grid`, `line`, `tree` (= `tree2`), `tree2`..`tree4`, `total`.
    ///
    /// ```
    /// assert!(maelstrom_services::topology::Topology::parse("tree4").is_some());
    /// ```
    pub fn parse(name: &str) -> Option<Topology> {
        Some(match name {
            "grid" => Topology::Grid,
            "line" => Topology::Line,
            "tree" | "tree2" => Topology::Tree(2),
            "tree3" => Topology::Tree(3),
            "tree4" => Topology::Tree(4),
            "total" => Topology::Total,
            _ => return None,
        })
    }

    /// Each node's neighbours, in node order and, per node, in the original's order.
    ///
    /// ```
    /// use maelstrom_services::topology::Topology;
    /// let nodes: Vec<String> = ["n0", "n1", "n2"].map(String::from).to_vec();
    /// let t = Topology::Line.neighbours(&nodes);
    /// assert_eq!(t[1], ("n1".to_string(), vec!["n0".to_string(), "n2".to_string()]));
    /// ```
    pub fn neighbours(self, nodes: &[String]) -> Vec<(String, Vec<String>)> {
        let n = nodes.len();
        let pick = |ix: Vec<usize>| ix.into_iter().map(|i| nodes[i].clone()).collect();
        (0..n)
            .filter(|_| !(self == Topology::Line && n < 2))
            .map(|k| {
                let ix: Vec<usize> = match self {
                    Topology::Total => (0..n).filter(|&i| i != k).collect(),
                    Topology::Line => [k.checked_sub(1), Some(k + 1).filter(|&i| i < n)]
                        .into_iter()
                        .flatten()
                        .collect(),
                    Topology::Tree(b) => {
                        let parent = (k > 0).then(|| (k - 1) / b);
                        let children = (b * k + 1..=b * k + b).filter(|&c| c < n);
                        parent.into_iter().chain(children).collect()
                    }
                    Topology::Grid => {
                        let side = (1..).find(|s| s * s >= n).unwrap_or(1);
                        let (i, j) = ((k / side) as isize, (k % side) as isize);
                        [(i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)]
                            .into_iter()
                            .filter(|&(r, c)| r >= 0 && c >= 0 && (c as usize) < side)
                            .map(|(r, c)| r as usize * side + c as usize)
                            .filter(|&ix| ix < n)
                            .collect()
                    }
                };
                (nodes[k].clone(), pick(ix))
            })
            .collect()
    }

    /// The `topology` field of the broadcast workload's `topology` message.
    ///
    /// ```
    /// use maelstrom_services::topology::Topology;
    /// let nodes: Vec<String> = ["n0", "n1"].map(String::from).to_vec();
    /// assert_eq!(Topology::Total.to_json(&nodes)["n0"], serde_json::json!(["n1"]));
    /// ```
    pub fn to_json(self, nodes: &[String]) -> Value {
        let map: Map<String, Value> = self
            .neighbours(nodes)
            .into_iter()
            .map(|(k, v)| (k, Value::from(v)))
            .collect();
        Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn grid_of_five_matches_the_original_layout() {
        // side 3: n0 n1 n2 / n3 n4
        let t = Topology::Grid.neighbours(&names(5));
        assert_eq!(t[0].1, ["n3", "n1"]);
        assert_eq!(t[1].1, ["n4", "n2", "n0"]);
        assert_eq!(t[2].1, ["n1"]);
        assert_eq!(t[4].1, ["n1", "n3"]);
    }

    #[test]
    fn trees_list_parent_then_children() {
        let t = Topology::Tree(2).neighbours(&names(6));
        assert_eq!(t[0].1, ["n1", "n2"]);
        assert_eq!(t[2].1, ["n0", "n5"]);
        let t4 = Topology::Tree(4).neighbours(&names(6));
        assert_eq!(t4[0].1, ["n1", "n2", "n3", "n4"]);
        assert_eq!(t4[5].1, ["n1"]);
    }

    #[test]
    fn single_node_line_is_empty_and_total_is_complete() {
        assert!(Topology::Line.neighbours(&names(1)).is_empty());
        assert_eq!(
            Topology::Total.neighbours(&names(1))[0].1,
            Vec::<String>::new()
        );
        assert_eq!(
            Topology::Total.neighbours(&names(4))[2].1,
            ["n0", "n1", "n3"]
        );
    }
}
