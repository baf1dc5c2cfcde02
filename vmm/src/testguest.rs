//! Building the freestanding test guests.
