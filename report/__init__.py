"""``focal report``: one offline HTML file of figures from a result's additive statistics."""
