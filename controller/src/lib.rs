//! geobatch's controller: sizes the worker fleet from the queue.
//!
//! # Layout
//! (filled in by the controller work: observe, policy, actuate, sim)
