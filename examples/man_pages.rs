//! Writes the manual pages, warabifs(8) and mount.warabifs(8), generated from the
//! command-line definition (src/cli.rs): `cargo run --example man_pages [-- DIR]`
//! (default `man/`). tests/man.rs checks that the committed pages are up to date.

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "man".to_string());
    std::fs::create_dir_all(&dir)?;
    for (name, text) in warabifs::cli::man_pages() {
        let path = std::path::Path::new(&dir).join(name);
        std::fs::write(&path, text)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
