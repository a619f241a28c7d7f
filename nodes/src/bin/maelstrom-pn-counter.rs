//! The `maelstrom-pn-counter` node binary: see [`maelstrom_example_nodes::pn_counter`].
fn main() -> std::io::Result<()> {
    maelstrom_example_nodes::run_stdio(maelstrom_example_nodes::pn_counter::node())
}
