"""Views of a plan: human text (rich), versioned JSON, and markdown for a PR comment.

Renderers are functions of the plan value only, so golden files pin their output.
"""
