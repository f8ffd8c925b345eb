//! The browser test (below, once the page exists).
