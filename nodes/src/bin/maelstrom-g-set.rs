//! The `maelstrom-g-set` node binary: see [`maelstrom_example_nodes::g_set`].
fn main() -> std::io::Result<()> {
    maelstrom_example_nodes::run_stdio(maelstrom_example_nodes::g_set::node())
}
