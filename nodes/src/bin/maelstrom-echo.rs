//! The `maelstrom-echo` node binary: see [`maelstrom_example_nodes::echo`].
fn main() -> std::io::Result<()> {
    maelstrom_example_nodes::run_stdio(maelstrom_example_nodes::echo::node())
}
