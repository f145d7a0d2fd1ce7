from django.db import models


class Order(models.Model):
    note = models.CharField(max_length=200)
    processed_by = models.CharField(max_length=200, blank=True, default="")


class Event(models.Model):
    """One row per task run that wants to prove it ran (and how often)."""

    key = models.CharField(max_length=200)
    data = models.JSONField(default=dict)
