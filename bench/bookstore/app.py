"""The bookstore API of the seeds' "12 requests per second" post, for tine's bench.

A publishing house's authors and their books, each book in one or more genres, in PostgreSQL
(bench/bookstore/setup.sh creates and seeds the database). Written the way a Flask team writes
it, not tuned: SQLAlchemy 2 ORM models with relationships (lazy loading, the default, as in
the post's app), marshmallow schemas that validate the query string and dump the objects, and
Flask's jsonify. So a request costs what it costs in such an application: `GET /author/<id>`
runs a query for the author, one for their books and one for each book's genres.

Endpoints (every answer is JSON):
    GET /author/<id>                   the author, their books (each with its genres) and the
                                       sorted union of their books' genres; 404 when missing
    GET /author?limit=20&offset=N      a page of authors by id; limit 1..100 (default 20),
                                       offset >= 0 (default 0); 400 with the errors otherwise

Environment:
    BOOKSTORE_DSN        the database, postgresql://USER@HOST:PORT/DB (setup.sh prints it)
    BOOKSTORE_POOL_SIZE  connections each process keeps (default 8: the most threads a worker
                         of the bench grid has); as many again may be opened beyond it

The WSGI application is `app`. Its engine connects on the first request, not at import, so
importing it in a master before the workers are forked (preload) shares no connection; a child
forked by os.fork after that forgets its parent's connections all the same.
"""

import os
from datetime import date, datetime
from typing import Optional

from flask import Flask, abort, jsonify, make_response, request
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate
from sqlalchemy import Column, DateTime, ForeignKey, String, Table, create_engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    mapped_column,
    relationship,
    scoped_session,
    sessionmaker,
)
from werkzeug.exceptions import HTTPException

# --- the models ------------------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


book_genre = Table(
    "book_genre",
    Base.metadata,
    Column("book_id", ForeignKey("book.id"), primary_key=True),
    Column("genre_id", ForeignKey("genre.id"), primary_key=True),
)


class Genre(Base):
    __tablename__ = "genre"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(unique=True)


class Author(Base):
    __tablename__ = "author"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    country_code: Mapped[str] = mapped_column(String(2))
    email: Mapped[str]
    phone: Mapped[str]
    contact_address: Mapped[str]
    contract_started: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    contract_finished: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    contract_value: Mapped[int]

    books: Mapped[list["Book"]] = relationship(back_populates="author", order_by="Book.id")

    @property
    def genres(self) -> list[str]:
        """The genres of all of this author's books, each once, sorted."""
        result = set()
        for book in self.books:
            result.update(genre.name for genre in book.genres)
        return sorted(result)


class Book(Base):
    __tablename__ = "book"

    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("author.id"), index=True)
    title: Mapped[str]
    isbn: Mapped[str]
    published: Mapped[date]
    pages: Mapped[int]

    author: Mapped[Author] = relationship(back_populates="books")
    genres: Mapped[list[Genre]] = relationship(secondary=book_genre, order_by=Genre.name)


# --- the schemas -----------------------------------------------------------------------------


class AuthorSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True)
    country_code = fields.String(required=True, validate=validate.Length(equal=2))
    email = fields.Email(required=True)
    phone = fields.String(required=True)
    contact_address = fields.String(required=True)
    contract_started = fields.DateTime(format="iso")
    contract_finished = fields.DateTime(format="iso", allow_none=True)
    contract_value = fields.Integer()


class GenreSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True)


class BookSummarySchema(Schema):
    id = fields.Integer(dump_only=True)
    title = fields.String(required=True)
    isbn = fields.String(required=True)
    published = fields.Date()
    pages = fields.Integer()
    genres = fields.Pluck(GenreSchema, "name", many=True)


class AuthorDetailSchema(AuthorSchema):
    books = fields.List(fields.Nested(BookSummarySchema), dump_only=True)
    genres = fields.List(fields.String(), dump_only=True)


class LimitOffsetSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0))


authors_schema = AuthorSchema(many=True)
author_detail_schema = AuthorDetailSchema()

# --- the database ----------------------------------------------------------------------------


def database_url(dsn: str):
    """BOOKSTORE_DSN as SQLAlchemy's URL, with the psycopg (3) driver unless it names one."""
    url = make_url(dsn)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url


if not os.environ.get("BOOKSTORE_DSN"):
    raise RuntimeError(
        "BOOKSTORE_DSN is not set: start the database with "
        '`eval "$(bench/bookstore/setup.sh start)"` first'
    )
POOL_SIZE = int(os.environ.get("BOOKSTORE_POOL_SIZE", "8"))
engine = create_engine(
    database_url(os.environ["BOOKSTORE_DSN"]),
    pool_size=POOL_SIZE,
    max_overflow=POOL_SIZE,
    pool_pre_ping=False,
)
# A forked worker must not use its parent's connections (SQLAlchemy's recipe for pools and
# multiprocessing): it forgets them without closing them, and opens its own.
os.register_at_fork(after_in_child=lambda: engine.dispose(close=False))
Session = scoped_session(sessionmaker(engine))

# --- the application -------------------------------------------------------------------------

app = Flask(__name__)


@app.teardown_appcontext
def remove_session(exception=None):
    Session.remove()


@app.errorhandler(HTTPException)
def http_error(error):
    return jsonify(error=error.name, message=error.description), error.code


def validate_get(schema):
    """The query string, loaded by SCHEMA; a 400 answer with the errors when it is invalid."""
    try:
        return schema.load(request.args)
    except ValidationError as error:
        abort(make_response(jsonify(errors=error.messages), 400))


@app.get("/author")
def author_list():
    """A page of authors, by id."""
    args = validate_get(LimitOffsetSchema())
    query = select(Author).order_by(Author.id).limit(args["limit"]).offset(args["offset"])
    authors = Session.scalars(query).all()
    return jsonify(authors_schema.dump(authors))


@app.get("/author/<int:author_id>")
def author_detail(author_id):
    """One author, their books and their genres."""
    author = Session.get(Author, author_id)
    if author is None:
        abort(404, description=f"no author {author_id}")
    return jsonify(author_detail_schema.dump(author))
