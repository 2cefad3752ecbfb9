"""Narration: an object's spans in, a story people can read out. Pure functions, no I/O."""

from flightrec.stories.html import story_html
from flightrec.stories.models import ObjectSummary, Story, StoryStep
from flightrec.stories.narrate import narrate, object_summary, status_of

__all__ = ["ObjectSummary", "Story", "StoryStep", "narrate", "object_summary", "status_of", "story_html"]
