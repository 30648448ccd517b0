//! The web UI: sessions, CSRF and redirects over plain HTTP; the pages and the admin's
//! whole story in a real headless Chromium.

mod access;
mod accessibility;
mod actions;
mod annealer_pages;
mod demo;
mod fleet_lists;
mod graph_summary;
mod grid_pages;
mod live;
mod logins;
mod overview;
mod pages;
mod power;
mod sessions;
mod story;
mod timeline;
mod viewer;
