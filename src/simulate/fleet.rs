//! The shape of a simulated fleet: N nodes, each with the same small graph of M roles (a
//! chain, or a diamond), every role on the `simulate` jig and implicit, so every dependency
//! stays on its node. That keeps the outcome a function of the draws alone: on one node
//! noderoles run one at a time in (cohort, id) order, and no node waits on another.

use std::fmt;

/// How the roles of one node depend on each other (`--shape`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// r1 → r2 → … → rM: each role requires the one before.
    Chain,
    /// r1 → (r2 … rM-1) → rM: one root, M-2 roles side by side, one role requiring them all.
    /// With fewer than 3 roles it is a chain.
    Diamond,
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Shape::Chain => "chain",
            Shape::Diamond => "diamond",
        })
    }
}

/// The jig the simulated roles run on: the simulation jig's behaviour under a name of its
/// own (see [`super::jig`]).
pub const JIG: &str = "simulate";

/// The barclamp that declares [`JIG`]; the role barclamps are its children.
pub const BASE_BARCLAMP: &str = "simulate";

/// A fleet: how many nodes, how many roles, in which shape.
#[derive(Debug, Clone, Copy)]
pub struct Fleet {
    pub nodes: u64,
    pub roles: u64,
    pub shape: Shape,
}

impl Fleet {
    /// The shape actually built: a diamond needs three roles.
    fn shape(&self) -> Shape {
        if self.roles < 3 {
            Shape::Chain
        } else {
            self.shape
        }
    }

    /// The barclamp of this fleet's roles. Role names are global, so each (shape, M) has
    /// its own barclamp, shared by every simulation of that shape and size.
    pub fn barclamp(&self) -> String {
        format!("{BASE_BARCLAMP}-{}-{}", self.shape(), self.roles)
    }

    /// Role `k` (from 1): `simulate-chain-5-r3`.
    pub fn role_name(&self, k: u64) -> String {
        format!("{}-r{k}", self.barclamp())
    }

    /// The short label of role `k` in reports: `r3`.
    pub fn role_label(k: u64) -> String {
        format!("r{k}")
    }

    /// The roles role `k` requires.
    pub fn parents(&self, k: u64) -> Vec<u64> {
        match (self.shape(), k) {
            (_, 1) => vec![],
            (Shape::Chain, k) => vec![k - 1],
            (Shape::Diamond, k) if k == self.roles => (2..self.roles).collect(),
            (Shape::Diamond, _) => vec![1],
        }
    }

    /// Role `k`'s cohort: 1 + the largest cohort of its parents, 0 without parents.
    pub fn cohort(&self, k: u64) -> u64 {
        self.parents(k)
            .into_iter()
            .map(|p| self.cohort(p) + 1)
            .max()
            .unwrap_or(0)
    }

    /// Every (parent, child) pair of roles.
    pub fn edges(&self) -> Vec<(u64, u64)> {
        (1..=self.roles)
            .flat_map(|k| self.parents(k).into_iter().map(move |p| (p, k)))
            .collect()
    }

    /// Whether role `k` is a leaf: bound explicitly, as an admin would bind the role that
    /// pulls in the others; no role requires it.
    pub fn explicit(&self, k: u64) -> bool {
        self.edges().iter().all(|&(p, _)| p != k)
    }

    /// Node `i` (from 1) of deployment `deployment`: `n42.<deployment>`.
    pub fn node_name(i: u64, deployment: &str) -> String {
        format!("n{i}.{deployment}")
    }

    /// The short label of a node in reports: its name without the deployment.
    pub fn node_label<'a>(name: &'a str, deployment: &str) -> &'a str {
        name.strip_suffix(deployment)
            .and_then(|n| n.strip_suffix('.'))
            .unwrap_or(name)
    }

    /// The index of a node from its name (`n42.<deployment>` → 42).
    pub fn node_index(name: &str, deployment: &str) -> Option<u64> {
        Self::node_label(name, deployment)
            .strip_prefix('n')?
            .parse()
            .ok()
    }

    /// The index of one of this fleet's roles from its name (`simulate-chain-5-r3` → 3).
    pub fn role_index(&self, name: &str) -> Option<u64> {
        name.strip_prefix(&format!("{}-r", self.barclamp()))?
            .parse()
            .ok()
    }

    /// The barclamp declaring the jig (imported first; unchanged after the first time).
    pub fn base_barclamp_yaml() -> String {
        format!(
            "barclamp: {{name: {BASE_BARCLAMP}, description: \"crowbar simulate: the jig of simulated fleets\"}}\n\
             jigs:\n  - name: {JIG}\n    description: \"The simulation jig (test.delay, test.fail) \
             under its own name: only `crowbar simulate` runs it.\"\n"
        )
    }

    /// The barclamp of this fleet's roles: implicit, on [`JIG`], with a timeout as long as
    /// the simulation jig ever takes (a drawn delay is the point, not a hang).
    pub fn barclamp_yaml(&self) -> String {
        let mut yaml = format!(
            "barclamp: {{name: {}, parent: {BASE_BARCLAMP}, description: \"crowbar simulate: {} of {} roles\"}}\nroles:\n",
            self.barclamp(),
            self.shape(),
            self.roles
        );
        for k in 1..=self.roles {
            yaml.push_str(&format!(
                "  - name: {}\n    jig: {JIG}\n    flags: [implicit]\n    timeout: 86400\n",
                self.role_name(k)
            ));
            let parents = self.parents(k);
            if !parents.is_empty() {
                let names: Vec<String> = parents.iter().map(|&p| self.role_name(p)).collect();
                yaml.push_str(&format!("    requires: [{}]\n", names.join(", ")));
            }
        }
        yaml
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(roles: u64, shape: Shape) -> Fleet {
        Fleet {
            nodes: 3,
            roles,
            shape,
        }
    }

    #[test]
    fn a_chain_requires_the_role_before() {
        let f = fleet(4, Shape::Chain);
        assert_eq!(f.edges(), [(1, 2), (2, 3), (3, 4)]);
        assert_eq!(
            (1..=4).map(|k| f.cohort(k)).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        assert_eq!(
            (1..=4).map(|k| f.explicit(k)).collect::<Vec<_>>(),
            [false, false, false, true]
        );
        assert_eq!(f.role_name(3), "simulate-chain-4-r3");
    }

    #[test]
    fn a_diamond_fans_out_and_in() {
        let f = fleet(5, Shape::Diamond);
        assert_eq!(f.edges(), [(1, 2), (1, 3), (1, 4), (2, 5), (3, 5), (4, 5)]);
        assert_eq!(
            (1..=5).map(|k| f.cohort(k)).collect::<Vec<_>>(),
            [0, 1, 1, 1, 2]
        );
        assert_eq!(f.barclamp(), "simulate-diamond-5");
        // too small for a diamond: a chain, under the chain's name
        assert_eq!(fleet(2, Shape::Diamond).barclamp(), "simulate-chain-2");
        assert_eq!(fleet(2, Shape::Diamond).edges(), [(1, 2)]);
    }

    #[test]
    fn names_and_labels_round_trip() {
        let f = fleet(3, Shape::Chain);
        assert_eq!(Fleet::node_name(42, "simulate-x"), "n42.simulate-x");
        assert_eq!(Fleet::node_label("n42.simulate-x", "simulate-x"), "n42");
        assert_eq!(Fleet::node_index("n42.simulate-x", "simulate-x"), Some(42));
        assert_eq!(Fleet::node_index("n42.other", "simulate-x"), None);
        assert_eq!(f.role_index(&f.role_name(2)), Some(2));
        assert_eq!(f.role_index("test-server"), None);
    }

    #[test]
    fn the_barclamps_parse() {
        let f = fleet(4, Shape::Diamond);
        let doc = crate::domain::barclamp::parse("x.yml", &f.barclamp_yaml());
        assert!(doc.is_ok(), "{doc:?}\n{}", f.barclamp_yaml());
        let base = crate::domain::barclamp::parse("x.yml", &Fleet::base_barclamp_yaml());
        assert!(base.is_ok(), "{base:?}\n{}", Fleet::base_barclamp_yaml());
        assert!(
            f.barclamp_yaml()
                .contains("requires: [simulate-diamond-4-r2, simulate-diamond-4-r3]")
        );
    }
}
