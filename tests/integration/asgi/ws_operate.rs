//! WebSockets as an operator sees them: many idle ones and what they cost, pings and dead
//! peers, slow readers, reloads and stops, and their counts in `tine status` and `/metrics`.
