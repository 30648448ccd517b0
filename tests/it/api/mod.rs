//! The REST API (API.md), in-process against a real database: every route's success path
//! and its refusals, each refusal checked for its status, its error body, and that it
//! changed nothing.

mod attribs;
mod auth;
mod bmc;
mod boot;
mod catalog;
mod deployments;
mod documents;
mod errors;
mod events;
mod fuzz;
mod hostile;
mod networks;
mod node_roles;
mod nodes;
mod openapi;
mod queue;
mod roles;
mod scenario;
mod tokens;
