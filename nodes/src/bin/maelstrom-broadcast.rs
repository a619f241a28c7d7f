//! The `maelstrom-broadcast` node binary: see [`maelstrom_example_nodes::broadcast`].
fn main() -> std::io::Result<()> {
    maelstrom_example_nodes::run_stdio(maelstrom_example_nodes::broadcast::node())
}
