"""The memory model: the budget, where it comes from, what work costs, the allocator."""
