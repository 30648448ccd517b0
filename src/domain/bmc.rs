//! What a BMC's settings may look like. The OpenAPI document declares the same patterns
//! (`http/api/schemas.rs`), so a client that follows it is never refused for a value's shape;
//! whether the address answers is the driver's business.

/// A host name or an IP address (v4, or v6 without brackets): a letter or digit, then
/// letters, digits, `.`, `:` and `-`.
pub const ADDRESS: &str = r"^[A-Za-z0-9][A-Za-z0-9.:-]{0,252}$";
/// Printable ASCII without spaces.
pub const USERNAME: &str = r"^[!-~]{1,64}$";
/// Anything but control characters, 1 to 128 of them.
pub const PASSWORD: &str = r"^[^\x00-\x1f\x7f]{1,128}$";
/// A Redfish system's id, or its path.
pub const SYSTEM: &str = r"^[A-Za-z0-9._:/-]{1,255}$";

/// The BMC drivers crowbar has.
pub const DRIVERS: [&str; 2] = ["redfish", "ipmi"];

/// Checks the settings of a BMC; `Err` names the field and what it must look like.
pub fn check(
    address: &str,
    username: &str,
    password: &str,
    system: Option<&str>,
) -> Result<(), String> {
    let bytes = address.as_bytes();
    let address_ok = !bytes.is_empty()
        && bytes.len() <= 253
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'-'));
    if !address_ok {
        return Err(format!(
            "address `{address}`: a host name or IP address (letters, digits, '.', ':' and '-'; no scheme, port or path)"
        ));
    }
    let username_ok =
        (1..=64).contains(&username.len()) && username.bytes().all(|b| (b'!'..=b'~').contains(&b));
    if !username_ok {
        return Err("username: 1 to 64 printable ASCII characters without spaces".into());
    }
    let password_ok = (1..=128).contains(&password.chars().count())
        && !password.chars().any(|c| c < ' ' || c == '\u{7f}');
    if !password_ok {
        // never the password itself
        return Err("password: 1 to 128 characters, no control characters".into());
    }
    if let Some(system) = system {
        let system_ok = (1..=255).contains(&system.len())
            && system.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-')
            });
        if !system_ok {
            return Err(format!(
                "system `{system}`: a Redfish system id or path (letters, digits, '.', '_', ':', '/' and '-')"
            ));
        }
    }
    Ok(())
}

/// A power operation (`docs/power.md`): its name in the API and the database, and what it
/// asks of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerOperation {
    On,
    Off,
    ForceOff,
    Cycle,
    PxeOnce,
    Discover,
    Check,
}

impl PowerOperation {
    pub const ALL: [PowerOperation; 7] = [
        PowerOperation::On,
        PowerOperation::Off,
        PowerOperation::ForceOff,
        PowerOperation::Cycle,
        PowerOperation::PxeOnce,
        PowerOperation::Discover,
        PowerOperation::Check,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PowerOperation::On => "on",
            PowerOperation::Off => "off",
            PowerOperation::ForceOff => "force-off",
            PowerOperation::Cycle => "cycle",
            PowerOperation::PxeOnce => "pxe-once",
            PowerOperation::Discover => "discover",
            PowerOperation::Check => "check",
        }
    }

    pub fn parse(name: &str) -> Option<PowerOperation> {
        PowerOperation::ALL.into_iter().find(|o| o.name() == name)
    }

    /// The power state it leaves the machine in (`on`, `off`); `None`: it changes nothing.
    pub fn desired(self) -> Option<&'static str> {
        match self {
            PowerOperation::Off | PowerOperation::ForceOff => Some("off"),
            PowerOperation::Check => None,
            _ => Some("on"),
        }
    }

    /// Whether the machine boots from the network next (set at the BMC before the cycle).
    pub fn boots_from_network(self) -> bool {
        matches!(self, PowerOperation::PxeOnce | PowerOperation::Discover)
    }
}

/// `host:port` for a URL: an IPv6 address in brackets; no port when none is given.
pub fn authority(address: &str, port: Option<u16>) -> String {
    let host = if address.contains(':') {
        format!("[{address}]")
    } else {
        address.to_string()
    };
    match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_operations_are_named_once_and_say_what_they_leave() {
        for operation in PowerOperation::ALL {
            assert_eq!(PowerOperation::parse(operation.name()), Some(operation));
        }
        assert_eq!(PowerOperation::parse("reboot"), None);
        assert_eq!(PowerOperation::ForceOff.desired(), Some("off"));
        assert_eq!(PowerOperation::Discover.desired(), Some("on"));
        assert_eq!(
            PowerOperation::Check.desired(),
            None,
            "a check changes nothing"
        );
        let network: Vec<_> = PowerOperation::ALL
            .into_iter()
            .filter(|o| o.boots_from_network())
            .collect();
        assert_eq!(network, [PowerOperation::PxeOnce, PowerOperation::Discover]);
    }

    #[test]
    fn settings_are_checked_field_by_field_without_echoing_the_password() {
        assert!(check("10.0.0.5", "crowbar", "s3cret pass", None).is_ok());
        assert!(
            check(
                "bmc-12.rack3.example.com",
                "root",
                "x",
                Some("System.Embedded.1")
            )
            .is_ok()
        );
        assert!(check("fd00::5", "root", "x", Some("/redfish/v1/Systems/1")).is_ok());
        for (address, error) in [
            ("https://10.0.0.5", "address"),
            ("10.0.0.5/x", "address"),
            ("", "address"),
            ("-bmc", "address"),
        ] {
            assert!(
                check(address, "u", "p", None)
                    .unwrap_err()
                    .starts_with(error),
                "{address}"
            );
        }
        assert!(
            check("h", "a user", "p", None)
                .unwrap_err()
                .starts_with("username")
        );
        let e = check("h", "u", "line\nbreak", None).unwrap_err();
        assert!(e.starts_with("password") && !e.contains("line"));
        assert!(
            check("h", "u", &"é".repeat(128), None).is_ok(),
            "characters, not bytes"
        );
        assert!(check("h", "u", &"p".repeat(129), None).is_err());
        assert!(
            check("h", "u", "p", Some("a b"))
                .unwrap_err()
                .starts_with("system")
        );
    }

    #[test]
    fn authorities_bracket_ipv6() {
        assert_eq!(authority("10.0.0.5", None), "10.0.0.5");
        assert_eq!(authority("bmc", Some(8443)), "bmc:8443");
        assert_eq!(authority("fd00::5", Some(443)), "[fd00::5]:443");
        assert_eq!(authority("fd00::5", None), "[fd00::5]");
    }
}
