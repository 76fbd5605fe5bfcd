use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;

#[derive(Args)]
pub struct KeygenArgs {
    /// Directory to write private.pem (mode 0600) and public.pem into.
    #[arg(long, value_name = "DIR", default_value = ".")]
    out_dir: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

pub fn execute(args: KeygenArgs) -> Result<ExitCode> {
    let private_path = args.out_dir.join("private.pem");
    let public_path = args.out_dir.join("public.pem");
    for path in [&private_path, &public_path] {
        if path.exists() && !args.force {
            bail!("{} exists; pass --force to overwrite", path.display());
        }
    }
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("while creating {}", args.out_dir.display()))?;
    let (private, public) = behavry_server::auth::keys::generate_pem()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(&private_path)
        .and_then(|mut f| f.write_all(private.as_bytes()))
        .with_context(|| format!("while writing {}", private_path.display()))?;
    std::fs::write(&public_path, public.as_bytes())
        .with_context(|| format!("while writing {}", public_path.display()))?;
    println!(
        "wrote {} and {}",
        private_path.display(),
        public_path.display()
    );
    println!("use them with:");
    println!(
        "  BEHAVRY_JWT_PRIVATE_KEY=\"$(cat {})\"",
        private_path.display()
    );
    println!(
        "  BEHAVRY_JWT_PUBLIC_KEY=\"$(cat {})\"",
        public_path.display()
    );
    Ok(ExitCode::SUCCESS)
}
