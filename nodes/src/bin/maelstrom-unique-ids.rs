//! The `maelstrom-unique-ids` node binary: see [`maelstrom_example_nodes::unique_ids`].
fn main() -> std::io::Result<()> {
    maelstrom_example_nodes::run_stdio(maelstrom_example_nodes::unique_ids::node())
}
