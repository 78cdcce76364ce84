"""Reading trained runs: predictions and the numbers behind each figure (analysis), the figures
themselves (plots) and the interactive explorer of notebook 07."""
